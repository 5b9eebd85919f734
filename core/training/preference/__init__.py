"""Preference tuning (DPO): the pairs and their checks (data), the run's preparation (run) and
training with TRL's DPOTrainer as phase 5's detached job (trainer)."""
