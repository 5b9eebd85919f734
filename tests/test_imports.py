"""The engine never imports the UI; start-up never imports the heavy ML stack."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import weightgate.core as core

ROOT = Path(__file__).resolve().parents[1]


def _core_modules() -> list[str]:
    names = ["weightgate.core"]
    for info in pkgutil.walk_packages(core.__path__, prefix="weightgate.core."):
        names.append(info.name)
    return names


def test_core_modules_found():
    modules = _core_modules()
    assert {"weightgate.core.engine.workspace", "weightgate.core.engine.checklist", "weightgate.core.gates", "weightgate.core.engine.evidence"} <= set(modules)


def test_no_core_module_imports_textual_or_rich():
    for name in _core_modules():
        code = (f"import sys, importlib; importlib.import_module({name!r}); "
                "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')); "
                "print(','.join(bad))")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "", f"{name} imports {out.stdout.strip()}"


def test_core_status_path_imports_no_torch():
    code = ("import sys; from weightgate.core.gates import compute_report; from weightgate.core.engine import jobs; from weightgate.core.memory import devices; "
            "print(','.join(m for m in ('torch', 'transformers', 'peft', 'bitsandbytes') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
