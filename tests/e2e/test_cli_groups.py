"""The command in groups: at most 17 entries at the top, every earlier command reachable in its
group (and an old name says where it went), help texts that wrap cleanly."""

from __future__ import annotations

import subprocess
import sys

import typer

from weightgate.tui.cli import MOVED, build_app

TOP_LEVEL = {"init", "status", "attest", "waive", "revoke", "jobs", "attach", "cancel", "demo", "tui",
             "weights", "memory", "eval", "data", "train", "release", "track"}
# Every command the flat CLI had, and where it is now.
EARLIER = {
    "init": "init", "status": "status", "attest": "attest", "waive": "waive", "revoke": "revoke", "jobs": "jobs",
    "attach": "attach", "cancel": "cancel", "demo": "demo", "tui": "tui", "selftest": "jobs selftest",
    "inspect": "weights inspect", "add": "weights add", "choose": "weights choose", "fetch": "weights fetch",
    "verify": "weights verify", "scan": "weights scan", "convert": "weights convert",
    "trust pickle": "weights trust pickle", "trust remote-code": "weights trust remote-code",
    "estimate": "memory estimate", "fit": "memory fit", "measure": "memory measure",
    "quant-check": "memory quant-check", "eval": "eval run", "runs": "eval runs", "baseline": "eval baseline",
    "rescore": "eval rescore", "compare": "eval compare", "reviews": "eval reviews",
    "determinism": "eval determinism", "latency": "eval latency", "benchmark": "eval benchmark",
    "evalset check": "eval check", "data check": "data check", "train": "train start",
    "train --resume": "train resume", "train runs": "train runs", "tune fewshot": "train fewshot",
    "tune gate": "train gate", "ship": "release ship", "versions": "release versions",
    "rollback": "release rollback", "alias": "release alias", "verify-release": "release verify",
    "health": "release health", "canary": "release canary", "serve-commands": "release serve-commands",
}


def _root():
    return typer.main.get_command(build_app())


def _subcommands(command) -> dict:
    """A group's commands, the root's lazy ones loaded (click's list_commands / get_command)."""
    if not hasattr(command, "list_commands"):
        return {}
    ctx = typer.Context(command)   # typer's own click
    return {name: command.get_command(ctx, name) for name in command.list_commands(ctx)}


def _find(path: str):
    command = _root()
    for word in path.split():
        command = _subcommands(command)[word]
    return command


def _every_command(command=None, path=()):
    command = command or _root()
    for name, sub in _subcommands(command).items():
        yield " ".join((*path, name)), sub
        yield from _every_command(sub, (*path, name))


def test_at_most_17_entries_at_the_top():
    assert set(_subcommands(_root())) == TOP_LEVEL


def test_every_earlier_command_is_in_its_group():
    for old, new in EARLIER.items():
        assert _find(new) is not None, (old, new)
        first = old.split()[0]
        if first in MOVED:
            assert new.startswith(MOVED[first].split()[0]), (old, new, MOVED[first])


def test_an_old_name_says_where_it_went():
    out = subprocess.run([sys.executable, "-m", "weightgate", "-w", "/nowhere", "verify-release", "v1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "`weightgate release verify`" in out.stderr, out.stderr


def test_help_texts_wrap_cleanly():
    """Short help under 80 characters; no line break inside a paragraph (Rich wraps them to the
    terminal), except in a `\\b` block, which is laid out by hand."""
    for path, command in _every_command():
        text = command.help or ""
        assert text.strip(), f"{path} has no help"
        first = text.split("\n\n")[0]
        assert "\n" not in first and len(first) < 80, (path, first)
        for paragraph in text.split("\n\n"):
            assert paragraph.startswith("\b") or "\n" not in paragraph, (path, paragraph)
        for param in command.params:
            assert getattr(param, "help", None) is None or "\n" not in param.help, (path, param.name)


def test_version():
    out = subprocess.run([sys.executable, "-m", "weightgate", "--version"], capture_output=True, text=True,
                         timeout=60)
    import weightgate

    assert out.returncode == 0 and out.stdout.strip() == f"weightgate {weightgate.__version__}"


def test_every_command_named_in_a_hint_exists():
    """The commands the code, the screens and the README tell a person to run are real ones: no
    old flat name, no sub-command a group does not have."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    groups = {name: set(_subcommands(command)) for name, command in _subcommands(_root()).items()
              if _subcommands(command)}
    texts = [(path, path.read_text()) for folder in ("core", "tui", "screens") for path in (root / folder).rglob("*.py")]
    texts.append((root / "README.md", (root / "README.md").read_text()))
    wrong = []
    for path, text in texts:
        for match in re.finditer(r"weightgate ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", text):
            first, second = match.group(1), match.group(2)
            if first in MOVED and first not in groups:
                wrong.append(f"{path.relative_to(root)}: {match.group(0)!r} (now `weightgate {MOVED[first]}`)")
            elif first in groups and second and second not in groups[first] and first != "jobs":
                wrong.append(f"{path.relative_to(root)}: {match.group(0)!r}")
    assert not wrong, "\n".join(wrong)
