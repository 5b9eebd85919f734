"""The workspace on disk: weightgate.toml (tomlkit, comments survive), the lock, .weightgate/."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import tomlkit
from tomlkit.exceptions import InvalidControlChar, ParseError
from tomlkit.toml_document import TOMLDocument

from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.errors import InputError, NotAWorkspace, line_col

CONFIG_NAME = "weightgate.toml"
LOCK_NAME = "weightgate.lock"
STATE_DIR = ".weightgate"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def evidence_path(self) -> Path:
        return self.state_dir / "evidence.jsonl"

    @property
    def jobs_dir(self) -> Path:
        return self.state_dir / "jobs"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def adapters_dir(self) -> Path:
        return self.state_dir / "adapters"

    @property
    def evals_dir(self) -> Path:
        return self.root / "evals"

    @property
    def registry_dir(self) -> Path:
        return self.root / "registry"

    def path_setting(self, key: str, default: str) -> Path:
        """A path from [settings], relative to the workspace root."""
        return setting_path(self, self.config(), key, default)

    def config(self) -> TOMLDocument:
        return load_config(self.config_path)

    def save_config(self, doc: TOMLDocument) -> None:
        save_config(self.config_path, doc)

    def update_config(self, change: Callable[[TOMLDocument], Any]) -> TOMLDocument:
        """Read, change, write atomically; a parse error leaves the file untouched."""
        doc = self.config()
        change(doc)
        self.save_config(doc)
        return doc


def setting_path(ws: Workspace, config: dict, key: str, default: str) -> Path:
    settings = config.get("settings", {}) if isinstance(config, dict) else {}
    value = settings.get(key, default) if isinstance(settings, dict) else default
    return (ws.root / str(value)).resolve()


def load_config(path: Path) -> TOMLDocument:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotAWorkspace(
            "no weightgate.toml here", path=path,
            hint="run `weightgate init` to create a workspace, or pass -w DIR",
        ) from None
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path,
            hint="save the file as UTF-8",
        ) from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> TOMLDocument:
    try:
        return tomlkit.parse(text)
    except ParseError as exc:
        # tomlkit's message ends with " at line L col C"; keep only the reason.
        reason = str(exc).split(" at line ")[0]
        line, column = toml_error_position(text, exc, reason)
        hint = _toml_hint(reason)
        if _at_end_of_file(reason):
            reason = "unexpected end of file"
        elif isinstance(exc, InvalidControlChar):
            reason, column, hint = _control_char_in_string(text, line, column)
        raise InputError(
            f"invalid TOML: {reason}", path=path, line=line, column=column,
            hint=hint + " Nothing was changed; fix the file and run the command again.",
        ) from None


def _control_char_in_string(text: str, line: int, column: int) -> tuple[str, int, str]:
    """(reason, column, hint) for tomlkit's "Control characters ... not allowed in strings".

    Nearly always the line ends inside a string: its closing quote is missing, and tomlkit
    complains about the newline. The column is then the opening quote's."""
    lines = text.splitlines(keepends=True)
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    opened = _unclosed_quote(source)
    if opened is not None and column - 1 >= len(source.rstrip("\r\n")):   # tomlkit stopped at the newline
        quote = source[opened]
        return ("missing closing quote", opened + 1,
                f"The string that starts here has no closing {quote} on this line: add it at the end "
                f"of the value (a string on several lines is written between triple quotes {quote * 3}).")
    bad = source[column - 1] if 0 < column <= len(source) else "?"
    code = f"U+{ord(bad):04X}" if len(bad) == 1 else "?"
    return (f"control character {code} inside a string", column,
            f"Remove it, or write it escaped in a \"...\" string (\\u{code[2:]}).")


def _unclosed_quote(line: str) -> int | None:
    """The index of the quote that opens a string still open at the end of `line`, if any."""
    opened: int | None = None
    index = 0
    while index < len(line):
        char = line[index]
        if opened is None:
            if char == "#":
                return None
            if char in "\"'":
                opened = index
        elif line[opened] == '"' and char == "\\":
            index += 1   # an escape: the next character cannot close the string
        elif char == line[opened]:
            opened = None
        index += 1
    return opened


def _at_end_of_file(reason: str) -> bool:
    # tomlkit reads a NUL past the last character ("Unexpected character: '\x00'") or says so.
    return "end of file" in reason.lower() or "'\\x00'" in reason


def toml_error_position(text: str, exc: ParseError, reason: str = "") -> tuple[int, int]:
    """1-based (line, column) of a tomlkit ParseError, as editors count (file:line:column).

    tomlkit gives a 1-based line but a 0-based column ("foo = bar baz" says col 6 for the
    "b" in column 7). At the end of the file it falls back to "col 0" of the last line; the
    error is then reported just after the last character that is not whitespace (an unclosed
    array or string), not at a column that does not exist.
    """
    if _at_end_of_file(reason or str(exc)):
        return line_col(text, len(text.rstrip()))
    return exc.line, exc.col + 1


def _toml_hint(reason: str) -> str:
    lowered = reason.lower()
    if "redefin" in lowered or "already exists" in lowered:
        return "A key or table appears twice; remove one."
    if "unexpected character" in lowered or "invalid" in lowered:
        return "Strings need quotes (\"...\"), booleans are true/false, and each key = value on one line."
    if "unclosed" in lowered or "eof" in lowered or "end of file" in lowered:
        return "A string, array or inline table is not closed."
    return "Check the TOML syntax at that position."


def save_config(path: Path, doc: TOMLDocument) -> None:
    write_atomic(path, tomlkit.dumps(doc))


def template_text(name: str, package: str = __package__) -> str:
    """A file under `package`'s templates/ folder (the workspace's own by default)."""
    return (resources.files(package) / "templates" / name).read_text(encoding="utf-8")


def init_workspace(root: Path, *, force: bool = False) -> Workspace:
    """Create weightgate.toml, evals/ with a documented example, and .weightgate/."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    ws = Workspace(root)
    if ws.config_path.exists() and not force:
        raise InputError(
            "a workspace already exists here", path=ws.config_path,
            hint="edit it, or pick another directory; weightgate never overwrites your requirements",
        )
    write_atomic(ws.config_path, template_text(CONFIG_NAME))
    ws.evals_dir.mkdir(exist_ok=True)
    for name in ("README.md", "task.jsonl"):
        target = ws.evals_dir / name
        if not target.exists():
            write_atomic(target, template_text(f"evals/{name}"))
    ensure_state_dirs(ws)
    return ws


def ensure_state_dirs(ws: Workspace) -> None:
    for directory in (ws.state_dir, ws.jobs_dir, ws.runs_dir, ws.adapters_dir):
        directory.mkdir(parents=True, exist_ok=True)


def open_workspace(root: Path | str | None = None) -> Workspace:
    """The workspace at `root` (default: $WEIGHTGATE_WORKSPACE or the current directory).

    The config is parsed here so a broken file is reported before any work starts.
    """
    if root is None:
        root = os.environ.get("WEIGHTGATE_WORKSPACE") or Path.cwd()
    ws = Workspace(Path(root).resolve())
    ws.config()
    ensure_state_dirs(ws)
    return ws


def default_cache_root() -> Path:
    if os.environ.get("WEIGHTGATE_CACHE"):
        return Path(os.environ["WEIGHTGATE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "weightgate"


def key_line(text: str, table: str, key: str) -> int | None:
    """The 1-based line of `key = ...` inside `[table]` of a TOML text (None if absent)."""
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            inside = stripped.strip("[] ") == table
            continue
        if inside and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return None
