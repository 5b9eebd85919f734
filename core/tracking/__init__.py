"""Mirroring to a team's tracker: MLflow and / or TensorBoard, from `[tracking]` in weightgate.toml.

The journal (and the eval runs and the registry) stay the source of truth; a tracker only gets a
copy. `mirror.py` turns what weightgate recorded (a training job's journal, an eval run, a registry
version) into backend-neutral records, `sync.py` sends whatever a tracker has not had yet (at the
end of every job, and from `weightgate track sync`), one backend module each does the sending.
mlflow and tensorboard are optional extras, imported only inside the backend that uses them.
"""
