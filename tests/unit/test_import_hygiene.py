"""Lazy imports stay lazy, checked in fresh interpreters: core never pulls in the UI; the TUI's
start-up, the status path and the command's groups never pull in torch and its friends."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import weightgate.core

ML_STACK = ("torch", "transformers", "peft", "bitsandbytes", "safetensors", "numpy", "huggingface_hub", "trl",
            "gguf", "tokenizers")
UI = ("textual", "rich", "typer")
TRACKERS = ("mlflow", "tensorboard")   # optional extras, imported only when a tracker is written to


def _modules_after(code: str, tmp_path) -> set[str]:
    """Every module a fresh interpreter holds after running `code` (cwd: an empty directory, so
    nothing but the installed weightgate can be imported)."""
    script = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _loaded_after(code: str, tmp_path) -> set[str]:
    """Top-level package names a fresh interpreter holds after running `code`."""
    return {name.split(".")[0] for name in _modules_after(code, tmp_path)}


def _core_modules() -> list[str]:
    return [info.name for info in pkgutil.walk_packages(weightgate.core.__path__, prefix="weightgate.core.")]


def test_core_modules_found():
    assert {"weightgate.core.engine.workspace", "weightgate.core.engine.checklist", "weightgate.core.gates",
            "weightgate.core.engine.evidence", "weightgate.core.training.data.prepare"} <= set(_core_modules())


def test_no_core_module_imports_the_ui(tmp_path):
    """Every module of core at once in one interpreter; on a failure, the culprit is named."""
    modules = _core_modules()
    code = "import importlib\n" + "".join(f"importlib.import_module({name!r})\n" for name in modules)
    if not _loaded_after(code, tmp_path) & set(UI):
        return
    culprits = [name for name in modules if _loaded_after(f"import {name}", tmp_path) & set(UI)]
    raise AssertionError(f"these core modules import {UI}: {culprits}")


def test_no_core_module_imports_a_tracker_at_import(tmp_path):
    """mlflow takes seconds to import and may not be installed: only the backend that writes to
    it imports it, inside the function that does."""
    modules = _core_modules()
    assert "weightgate.core.tracking.mlflow_backend" in modules
    code = "import importlib\n" + "".join(f"importlib.import_module({name!r})\n" for name in modules)
    assert not _loaded_after(code, tmp_path) & set(TRACKERS)


def test_the_tui_starts_without_the_ml_stack_or_the_checks(tmp_path):
    modules = _modules_after("import weightgate.tui.app", tmp_path)
    assert not {name.split(".")[0] for name in modules} & {*ML_STACK, "typer"}
    # The checks of every phase load in a worker after the first frame, not at import.
    assert "weightgate.core.gates" not in modules
    assert not {name for name in modules if name.startswith("weightgate.screens.")} - {"weightgate.screens.overview"}


def test_the_status_path_and_the_commands_load_no_ml_stack(tmp_path):
    code = ("from weightgate.core.gates import compute_report\nfrom weightgate.core.engine import jobs, views\n"
            "from weightgate.core.memory import devices\nfrom weightgate.tui.cli import build_app\nbuild_app()\n")
    loaded = _loaded_after(code, tmp_path)
    assert not loaded & set(ML_STACK), loaded & set(ML_STACK)


def test_weightgate_alone_does_not_import_typer(tmp_path):
    """`weightgate` with no command opens the TUI: the CLI's entry point imports no typer or core."""
    loaded = _loaded_after("import weightgate.tui.cli", tmp_path)
    assert not loaded & {"typer", "rich", *ML_STACK}, loaded


def test_a_command_loads_only_its_own_group(tmp_path):
    """The root loads an entry's module when it runs: `weightgate status` never imports the
    release, training or demo machinery (`weightgate --help` loads them all)."""
    code = ("from weightgate.tui.cli import build_app\nimport typer\n"
            "group = typer.main.get_command(build_app())\n"
            "group.get_command(typer.Context(group), 'status')\n")
    modules = _modules_after(code, tmp_path)
    assert "weightgate.core.gates" in modules
    loaded = {name for name in modules if name.startswith(("weightgate.core.release.ship", "weightgate.core.demo",
                                                            "weightgate.core.training.session",
                                                            "weightgate.tui.cli.release"))}
    assert not loaded, loaded


def test_hub_kernels_are_off_unless_asked_and_a_loaded_model_is_not_kernelized(tiny_model_dir):
    """transformers 5 would kernelize each model with code fetched from the hub: weightgate turns
    that off for itself and every process it starts, and keeps a user's explicit choice."""
    import os

    code = "import os, weightgate; print(os.environ['USE_HUB_KERNELS'])"
    env = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "NO"
    assert subprocess.run([sys.executable, "-c", code], env={**env, "USE_HUB_KERNELS": "YES"}, capture_output=True,
                          text=True, check=True).stdout.strip() == "YES"
    from weightgate.core.memory.loading import load_model

    loaded = load_model(tiny_model_dir, "fp32", device="cpu")
    assert loaded.model.use_kernels is False
