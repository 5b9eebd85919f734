"""Job kinds: name -> the function a job process runs.

Entries are "module:function" strings, imported only inside the job process, so listing or
starting a job never imports torch, and the engine names each phase's `jobs.py` without
importing it (the phases sit above the engine). A kind function takes a
`core.engine.jobs.JobContext` and returns a JSON-able dict (or None) that becomes the data of the
job's final `result` event.

To add a kind, write it in its phase's jobs.py and add a line to KINDS. A kind may also be given directly as "package.module:function"
(handy in tests and plugins); it must be importable in the job process.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from weightgate.core.engine.errors import InputError

KINDS: dict[str, str] = {
    "selftest": "weightgate.core.engine.selftest:run_selftest",
    "download": "weightgate.core.weights.jobs:run_download",
    "verify": "weightgate.core.weights.jobs:run_verify",
    "convert_pickle": "weightgate.core.weights.jobs:run_convert_pickle",
    "lock_gguf": "weightgate.core.weights.jobs:run_lock_gguf",
    "memory_measure": "weightgate.core.memory.jobs:run_measure",
    "eval": "weightgate.core.evaluation.jobs:run_eval",
    "determinism": "weightgate.core.evaluation.jobs:run_determinism",
    "latency": "weightgate.core.evaluation.jobs:run_latency",
    "benchmark": "weightgate.core.evaluation.jobs:run_benchmark",
    "quant_quality": "weightgate.core.evaluation.jobs:run_quant_quality",
    "data_check": "weightgate.core.training.jobs:run_data_check",
    "fewshot": "weightgate.core.training.jobs:run_fewshot",
    "tune_gate": "weightgate.core.training.jobs:run_gate",
    "train": "weightgate.core.training.jobs:run_train",
    "ship": "weightgate.core.release.jobs:run_ship",
    "canary": "weightgate.core.release.jobs:run_canary",
    "serve": "weightgate.core.release.jobs:run_serve",
    "demo_model": "weightgate.core.demo.jobs:run_demo_model",
}

# The phase whose items a kind's evidence is for: a job started while that phase is locked says
# so (the work is recorded, the gate stays closed).
PHASE_OF_KIND: dict[str, int] = {
    "download": 2, "verify": 2, "convert_pickle": 2, "lock_gguf": 2, "memory_measure": 3, "quant_quality": 3,
    "eval": 4, "determinism": 4, "latency": 4, "benchmark": 1, "data_check": 5, "fewshot": 5, "tune_gate": 5,
    "train": 5, "ship": 6, "canary": 6, "serve": 6,
}

KindFunction = Callable[[Any], "dict | None"]


def kind_names() -> list[str]:
    return sorted(KINDS)


def is_known(kind: str) -> bool:
    return kind in KINDS or _is_dotted(kind)


def check_kind(kind: str) -> None:
    if not is_known(kind):
        raise InputError(f"unknown job kind {kind!r}", hint=f"known kinds: {', '.join(kind_names())}")


def resolve(kind: str) -> KindFunction:
    """Import and return the kind's function (call this in the job process)."""
    check_kind(kind)
    target = KINDS.get(kind, kind)
    module_name, _, function_name = target.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise InputError(f"job kind {kind!r}: {module_name} has no function {function_name!r}") from None


def _is_dotted(kind: str) -> bool:
    module_name, colon, function_name = kind.partition(":")
    return bool(colon and module_name and function_name.isidentifier()
                and all(part.isidentifier() for part in module_name.split(".")))
