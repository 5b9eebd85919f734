"""E: edit weightgate.toml (or, on Evaluation, the task eval set) in $EDITOR without leaving the TUI.

The editor works on a draft copy in .weightgate/drafts/; on return the draft is checked the way
the engine reads it (weightgate.toml: TOML; an eval set: every JSONL line and case field). A valid
draft replaces the file (atomically) and the checklist is re-computed; an invalid one leaves the
file as it was, is reported as file:line: what is wrong, and is kept: E opens it again, so
nothing typed is lost. The TUI is suspended meanwhile (App.suspend), as in git commit.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from weightgate.core.engine.errors import InputError

DRAFTS = "drafts"


@dataclass(frozen=True)
class EditOutcome:
    changed: bool
    problem: str = ""   # "weightgate.toml:12: invalid TOML: …" when the draft was not saved


def editor_command() -> list[str]:
    """$VISUAL, then $EDITOR, then vi (what git and crontab -e use)."""
    return shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")


def draft_path(state_dir: Path, target: Path) -> Path:
    return state_dir / DRAFTS / target.name


def open_draft(state_dir: Path, target: Path) -> Path:
    """The draft to edit: a kept one from an invalid edit, else a fresh copy of the target."""
    draft = draft_path(state_dir, target)
    if not draft.exists():
        draft.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, draft)
    return draft


def first_problem(draft: Path, shown_as: str) -> str:
    """'' if the draft reads cleanly, else 'shown_as:line: what is wrong' for its first problem."""
    def where(error: InputError) -> str:
        return f"{shown_as}:{error.line}" if error.line is not None else shown_as

    try:
        text = draft.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"{shown_as}: cannot read the edit: {exc}"
    if draft.suffix == ".toml":
        from weightgate.core.engine.workspace import parse_config  # lazy: core's parser, needed only here

        try:
            parse_config(text, draft)
        except InputError as error:
            return f"{where(error)}: {error.describe()}"
        return ""
    from weightgate.core.evaluation.evalsets import load_evalset  # lazy: core's reader, needed only here

    problems = load_evalset(draft).problems
    return f"{where(problems[0])}: {problems[0].describe()}" if problems else ""


def finish_edit(draft: Path, target: Path, shown_as: str) -> EditOutcome:
    """After the editor: save a valid changed draft over the target, keep an invalid one."""
    if draft.read_bytes() == target.read_bytes():
        draft.unlink()
        return EditOutcome(changed=False)
    problem = first_problem(draft, shown_as)
    if problem:
        return EditOutcome(changed=False, problem=problem)
    temporary = target.with_name(f".{target.name}.saving")
    shutil.copyfile(draft, temporary)
    os.replace(temporary, target)
    draft.unlink()
    return EditOutcome(changed=True)


def run_editor(path: Path) -> int:
    """Run the editor on `path` in the foreground; its exit code (127: not found)."""
    try:
        return subprocess.run([*editor_command(), str(path)], check=False).returncode
    except FileNotFoundError:
        return 127
