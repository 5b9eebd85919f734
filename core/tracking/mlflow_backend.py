"""The MLflow side: a run per record (tagged with its key), params, metrics by step, artifacts;
a registry version also becomes a registered model version whose aliases mirror the registry's.

Idempotent in the tracker itself, not only through weightgate's state files: a run is marked
complete (tag `weightgate.fingerprint`) only after everything was logged, so a run found with the
same key and fingerprint is left alone, one left half-written (the server went away mid-way) is
deleted and written again whole, and a release's run is updated in place (its aliases moved).
mlflow is imported here only, when a destination is opened (an optional extra, seconds to import).
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from weightgate.core.tracking.config import redact
from weightgate.core.tracking.mirror import Record

KEY_TAG = "weightgate.key"
FINGERPRINT_TAG = "weightgate.fingerprint"
# MLflow's own limits per log_batch call.
MAX_METRICS, MAX_PARAMS = 1000, 100
RUN_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED", "crashed": "FAILED"}
PROBE_TIMEOUT_S = 3.0


class TrackerUnavailable(Exception):
    """The tracker cannot be reached or refused the write (the job goes on; sync retries)."""


def _bound_http_waits() -> None:
    # MLflow's defaults retry a dead server with backoff for minutes, which would hold a finished
    # job open; a person who wants longer sets the variables, and they win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def probe(uri: str) -> None:
    """Fail in seconds, not after MLflow's retries, when an http(s) server is not listening."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise TrackerUnavailable(f"MLflow at {redact(uri)} is not reachable ({exc.strerror or exc})") from None


class MlflowTarget:
    def __init__(self, uri: str, experiment: str) -> None:
        self.uri = uri
        _bound_http_waits()
        probe(uri)
        from mlflow.tracking import MlflowClient  # lazy: the optional extra, seconds to import

        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.experiment_id = self._experiment(experiment)

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            # Beside the database, not ./mlruns under whatever directory the job runs in.
            location = "file://" + os.path.join(os.path.dirname(self.uri[len("sqlite:///"):]), "mlartifacts")
        return self.client.create_experiment(name, artifact_location=location)

    def find(self, key: str) -> list:
        return self.client.search_runs([self.experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'",
                                       max_results=10)

    def mirror(self, record: Record) -> dict:
        """Send one record; returns what the state file keeps (the MLflow run id)."""
        existing = self.find(record.key)
        for run in existing:
            if run.data.tags.get(FINGERPRINT_TAG) == record.fingerprint:
                if record.release is not None:
                    self._model_version(record, run.info.run_id)   # the aliases may lag a crash
                return {"run_id": run.info.run_id}
        if record.release is not None and existing:
            # The same version, aliases moved or manifest re-written at promotion: update it.
            run_id = existing[0].info.run_id
            self._tags(run_id, record)
            for path in record.artifacts:
                self.client.log_artifact(run_id, str(path))
            self._model_version(record, run_id)
            self.client.set_tag(run_id, FINGERPRINT_TAG, record.fingerprint)
            return {"run_id": run_id}
        for run in existing:
            self.client.delete_run(run.info.run_id)   # half-written or outdated: replaced whole
        return {"run_id": self._create(record)}

    def _tags(self, run_id: str, record: Record) -> None:
        from mlflow.entities import RunTag  # lazy: the optional extra

        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in record.tags.items()])

    def _create(self, record: Record) -> str:
        from mlflow.entities import Metric, Param  # lazy: the optional extra

        first = min((p.time for p in record.metrics), default=None)
        run = self.client.create_run(self.experiment_id, run_name=record.name, tags={KEY_TAG: record.key},
                                     start_time=int(first * 1000) if first else None)
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in sorted(record.params.items())]
        for start in range(0, len(params), MAX_PARAMS):
            self.client.log_batch(run_id, params=params[start:start + MAX_PARAMS])
        metrics = [Metric(p.name, p.value, int(p.time * 1000), p.step) for p in record.metrics]
        for start in range(0, len(metrics), MAX_METRICS):
            self.client.log_batch(run_id, metrics=metrics[start:start + MAX_METRICS])
        self._tags(run_id, record)
        for path in record.artifacts:
            self.client.log_artifact(run_id, str(path))
        if record.release is not None:
            self._model_version(record, run_id)
        last = max((p.time for p in record.metrics), default=None)
        self.client.set_terminated(run_id, RUN_STATUS.get(record.status, "FINISHED"),
                                   end_time=int(last * 1000) if last and record.kind == "train" else None)
        # Last: only a run written whole carries its fingerprint (see the module docstring).
        self.client.set_tag(run_id, FINGERPRINT_TAG, record.fingerprint)
        return run_id

    def _model_version(self, record: Record, run_id: str) -> None:
        """The registered model version of a registry version, its aliases as the registry's."""
        from mlflow.exceptions import MlflowException  # lazy: the optional extra

        release = record.release
        name = release["model"]
        try:
            model = self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, tags={"weightgate.registry": name})
            model = self.client.get_registered_model(name)
        # This run's version: a registered model name is global in a server, and another
        # workspace with the same registry name has its own v1.
        found = [mv for mv in self.client.search_model_versions(f"name='{name}'")
                 if (mv.tags or {}).get("weightgate.version") == release["version"] and mv.run_id == run_id]
        if found:
            number = str(found[0].version)
        else:
            number = str(self.client.create_model_version(
                name, source=f"runs:/{run_id}/{record.artifacts[0].name if record.artifacts else ''}", run_id=run_id,
                tags={"weightgate.version": release["version"]},
                description=f"weightgate {name}@{release['version']}").version)
        held = {alias: str(version) for alias, version in (model.aliases or {}).items()}
        for alias in release["aliases"]:
            if held.get(alias) != number:
                self.client.set_registered_model_alias(name, alias, number)
        for alias, version in held.items():
            if version == number and alias not in release["aliases"]:
                self.client.delete_registered_model_alias(name, alias)   # moved away in the registry
