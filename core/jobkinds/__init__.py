"""Job kinds: name -> the function a job process runs.

Entries are "module:function" strings, imported only inside the job process, so listing or
starting a job never imports torch. A kind function takes a `core.jobs.JobContext` and returns
a JSON-able dict (or None) that becomes the data of the job's final `result` event.

To add a kind, add a line to KINDS. A kind may also be given directly as "package.module:function"
(handy in tests and plugins); it must be importable in the job process.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from core.errors import InputError

KINDS: dict[str, str] = {
    "selftest": "core.jobkinds.selftest:run",
    "download": "core.jobkinds.download:run",
    "verify": "core.jobkinds.verify:run",
    "convert_pickle": "core.jobkinds.convert_pickle:run",
    "demo_model": "core.jobkinds.demo_model:run",
    "lock_gguf": "core.jobkinds.gguf:run",
    "eval": "core.jobkinds.eval:run",
    "determinism": "core.jobkinds.eval:run_determinism",
    "latency": "core.jobkinds.eval:run_latency",
    "benchmark": "core.jobkinds.eval:run_benchmark",
    "memory_measure": "core.jobkinds.memory_measure:run",
    "data_check": "core.jobkinds.tune:run_data_check",
    "fewshot": "core.jobkinds.tune:run_fewshot",
    "tune_gate": "core.jobkinds.tune:run_gate",
    "train": "core.jobkinds.train:run",
    "quant_quality": "core.jobkinds.quant_quality:run",
    "ship": "core.jobkinds.ship:run_ship",
    "canary": "core.jobkinds.ship:run_canary",
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
