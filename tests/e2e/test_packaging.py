"""What `pip install weightgate` puts into site-packages: one top-level import name, everything
the app needs inside it, and no clash with another distribution's generic top-level modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("core", "tui", "screens", "themes")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel` of a copy of the sources (setuptools writes build/ and *.egg-info beside them)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in (*FOLDERS, "weightgate"):
        shutil.copytree(ROOT / folder, source / folder, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (found,) = out.glob("weightgate-*.whl")
    return found


@pytest.mark.slow
def test_the_wheel_has_one_top_level_name_and_every_module(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"weightgate", wheel.name.split("-py")[0] + ".dist-info"}
    packaged = {name for name in names if name.endswith(".py")}
    for folder in FOLDERS:
        in_repo = {f"weightgate/{folder}/{path.relative_to(ROOT / folder).as_posix()}"
                   for path in (ROOT / folder).rglob("*.py")}
        assert in_repo and in_repo <= packaged, sorted(in_repo - packaged)[:5]
    # the data the code reads at run time
    assert {"weightgate/themes/app.tcss", "weightgate/core/engine/templates/weightgate.toml",
            "weightgate/core/engine/templates/evals/task.jsonl", "weightgate/core/demo/templates/replay.jsonl",
            "weightgate/core/demo/templates/weightgate.toml"} <= set(names)
    top_level = [name for name in names if name.endswith("top_level.txt")]
    if top_level:
        assert zipfile.ZipFile(wheel).read(top_level[0]).decode().split() == ["weightgate"]


@pytest.mark.slow
def test_installs_beside_a_distribution_that_ships_a_top_level_core(wheel, tmp_path):
    """Distributions on PyPI ship top-level `core`, `tui` and `themes` modules: with weightgate
    installed beside them, both are importable and neither shadows the other."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for name in ("core", "tui", "themes"):
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(f"WHO = 'the other {name}'\n")
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    code = ("import core, tui, themes, weightgate, weightgate.core, weightgate.core.engine.errors\n"
            "assert (core.WHO, tui.WHO, themes.WHO) == ('the other core', 'the other tui', 'the other themes')\n"
            "assert weightgate.core.__file__.endswith('weightgate/core/__init__.py'), weightgate.core.__file__\n"
            "print(weightgate.__version__)")
    out = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    import weightgate

    assert out.stdout.strip() == weightgate.__version__
