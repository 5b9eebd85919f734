"""Errors that name the file, line and column, and say what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class WeightgateError(Exception):
    """Base class. The CLI turns these into a message and an exit code, never a traceback."""

    exit_code = 1


@dataclass
class InputError(WeightgateError):
    """Bad user input: a file, a line, a column, what is wrong, and the fix. Exit code 2."""

    message: str
    path: Path | None = None
    line: int | None = None
    column: int | None = None
    hint: str | None = None

    exit_code = 2

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def location(self) -> str:
        if self.path is None:
            return ""
        where = str(self.path)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def __str__(self) -> str:
        where = self.location()
        what = self.describe()
        text = f"{where}: {what}" if where else what
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def describe(self) -> str:
        """What is wrong, as shown after the location (subclasses add what they know)."""
        return self.message

    def to_dict(self) -> dict:
        return {
            "error": self.message,
            "path": str(self.path) if self.path else None,
            "line": self.line,
            "column": self.column,
            "hint": self.hint,
        }


class NotAWorkspace(InputError):
    pass


@dataclass
class FaultError(InputError):
    """A file that must not be loaded, with a stable `fault` code (see each format's FAULTS):
    evidence records, checks and tests key on the code; people read the message."""

    fault: str = "invalid"

    def detail(self) -> str:
        """Where inside the file (a tensor, a byte offset), appended to the message."""
        return ""

    def describe(self) -> str:
        return f"{self.message}{self.detail()} [{self.fault}]"

    def to_dict(self) -> dict:
        return {**super().to_dict(), "fault": self.fault}


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column
