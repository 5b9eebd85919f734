"""The house rules, read from the source (imports inside functions count, so a cycle cannot
hide in one): no import cycles, core's packages layered by phase, core never imports the UI,
every import inside a function says why it is there, and no module in core over 600 lines.

import-linter (`lint-imports`, contracts in pyproject.toml) checks the layers too, on the
import graph grimp builds; this test adds what it cannot see: cycles through function-level
imports, the reasons, and the sizes.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"core": "weightgate.core", "tui": "weightgate.tui", "screens": "weightgate.screens",
           "themes": "weightgate.themes", "weightgate": "weightgate"}
# core's packages, top to bottom: each may import only those below it.
LAYERS = ["demo", "release", "gates", "registry", "training", "evaluation", "memory", "weights", "engine"]
UI = ("weightgate.tui", "weightgate.screens", "weightgate.themes", "textual", "rich", "typer")
MAX_CORE_LINES = 600


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


class Import:
    def __init__(self, importer: str, target: str, line: int, in_function: bool, text: str):
        self.importer, self.target, self.line, self.in_function, self.text = importer, target, line, in_function, text

    def __repr__(self) -> str:
        return f"{MODULES[self.importer].relative_to(ROOT)}:{self.line} {self.text.strip()}"


def _imports(module: str, path: Path) -> list[Import]:
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(module, alias.name, child.lineno, in_function, lines[child.lineno - 1]))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - child.level + 1] + ([base] if base else []))
                for alias in child.names:
                    name = f"{base}.{alias.name}"
                    target = name if name in MODULES else base
                    found.append(Import(module, target, child.lineno, in_function,
                                        "\n".join(lines[child.lineno - 1:child.end_lineno])))
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                continue   # annotations only: never executed
            visit(child, nested)

    visit(tree, False)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
           (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


IMPORTS = {module: _imports(module, path) for module, path in MODULES.items()}


def _ours(target: str) -> str | None:
    """The first-party module an import lands on (a package's __init__ counts), else None."""
    while target:
        if target in MODULES:
            return target
        target = target.rpartition(".")[0]
    return None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imports in IMPORTS.items():
        for imp in imports:
            target = _ours(imp.target)
            if target and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, result, counter = {}, {}, set(), [], [], [0]
    for start in sorted(MODULES):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        result.append(sorted(component))
    return result


def _layer(module: str) -> int | None:
    if not module.startswith("weightgate.core."):
        return None
    name = module.split(".")[2]
    return LAYERS.index(name) if name in LAYERS else None


def test_the_source_is_read():
    assert {"weightgate.core.engine.workspace", "weightgate.core.gates", "weightgate.tui.app"} <= set(MODULES)
    assert sum(len(imports) for imports in IMPORTS.values()) > 500


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (imports inside functions included):\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles)


def test_core_packages_import_only_the_layers_below():
    wrong = []
    for module, imports in IMPORTS.items():
        mine = _layer(module)
        if mine is None:
            continue
        for imp in imports:
            target = _ours(imp.target)
            theirs = _layer(target) if target else None
            if theirs is not None and theirs < mine:
                wrong.append(f"{imp!r}  ({LAYERS[mine]} -> {LAYERS[theirs]})")
    assert not wrong, "upward imports in core:\n" + "\n".join(wrong)


def test_core_never_imports_the_ui():
    wrong = [repr(imp) for module, imports in IMPORTS.items() if module.startswith("weightgate.core")
             for imp in imports if imp.target.startswith(UI) or imp.target.split(".")[0] in UI]
    assert not wrong, "\n".join(wrong)


def test_screens_do_not_import_each_other():
    wrong = []
    for module, imports in IMPORTS.items():
        if not module.startswith("weightgate.screens."):
            continue
        mine = module.split(".")[2]
        for imp in imports:
            target = _ours(imp.target) or ""
            if target.startswith("weightgate.screens.") and target.split(".")[2] != mine:
                wrong.append(repr(imp))
    assert not wrong, "\n".join(wrong)


def _reason(text: str) -> str:
    """The comment of an import line without its `noqa` codes: what is left must say why."""
    comment = " ".join(line.partition("#")[2] for line in text.splitlines() if "#" in line)
    return re.sub(r"noqa(:\s*[A-Z]+[0-9]+(,\s*[A-Z]+[0-9]+)*)?", "", comment).strip(" -:")


def test_every_import_inside_a_function_says_why():
    """An import inside a function keeps something heavy (torch, transformers, huggingface_hub,
    textual for a screen not shown yet, ...) off a start-up path; the comment on its line says
    which. A bare `# noqa` is not a reason."""
    silent = [repr(imp) for imports in IMPORTS.values() for imp in imports
              if imp.in_function and len(_reason(imp.text).split()) < 2]
    assert not silent, f"{len(silent)} imports inside functions without a reason:\n" + "\n".join(silent)


def test_no_module_in_core_over_600_lines():
    big = {str(path.relative_to(ROOT)): n for module, path in MODULES.items()
           if module.startswith("weightgate.core") and (n := len(path.read_text().splitlines())) > MAX_CORE_LINES}
    assert not big, big


@pytest.mark.skipif(not (Path(sys.executable).parent / "lint-imports").exists(), reason="import-linter not installed")
def test_import_linter_contracts_hold():
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_third_party_import_is_a_declared_dependency():
    """pyproject.toml names every distribution the code imports (a missing one installs fine here,
    where it came in as a dependency of another, and breaks on the next release of that one)."""
    import importlib.metadata

    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # The optional extras (mlflow, tensorboard) count: their imports are lazy, inside the tracking
    # backends (test_import_hygiene holds that no core module loads them at import).
    specs = project["dependencies"] + [spec for extra, specs in project["optional-dependencies"].items()
                                       if extra != "dev" for spec in specs]
    declared = {re.split(r"[<>=!~ \[;]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in specs}
    distributions = importlib.metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names) | {"weightgate", "__future__", "_compat_pickle"}
    missing = {}
    for module, imports in IMPORTS.items():
        for imp in imports:
            top = imp.target.split(".")[0]
            if top in stdlib or not top:
                continue
            names = {name.lower().replace("_", "-") for name in distributions.get(top, [top])}
            if not names & declared:
                missing.setdefault(top, repr(imp))
    assert not missing, missing


def test_every_job_kind_names_a_function_that_exists():
    """engine/job_kinds.py names each kind's function as "module:function" (imported only in the
    job process): each must be a top-level function of that module."""
    from weightgate.core.engine.job_kinds import KINDS

    for kind, target in KINDS.items():
        module, _, function = target.partition(":")
        tree = ast.parse(MODULES[module].read_text())
        defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assert function in defined, (kind, target)


@pytest.mark.skipif(not (Path(sys.executable).parent / "ruff").exists(), reason="ruff not installed")
def test_no_undefined_names():
    """A name used but never defined or imported (pyflakes F821-F823) is a crash waiting for its
    code path: moving code between modules makes them, and only some paths are run by tests."""
    done = subprocess.run([str(Path(sys.executable).parent / "ruff"), "check", "--no-cache", "--select",
                           "F821,F822,F823", "--output-format", "concise", *FOLDERS, "tests"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
