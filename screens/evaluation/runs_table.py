"""The Evaluation screen's runs: newest first, B for a baseline, a live row for a running eval.

Rows come from core.evaluation.runs.list_runs (run.json files, read in a thread worker); a running `eval`
job's row shows its cases done and ETA from the jobs list the App already polls. Selecting two
rows with space and pressing C opens them in the Compare screen.
"""

from __future__ import annotations

from rich.text import Text

from weightgate.core.evaluation.views import RunRow
from weightgate.tui.widgets.fitted_table import Column, FittedTable, middle_ellipsis


class RunsTable(FittedTable):
    COLUMNS = (
        Column("mark", "", 2),
        Column("name", "Run"),
        Column("set", "Set", 7),
        Column("kind", "Kind", 11, drop=2),
        Column("score", "Score", 14),
        Column("state", "State", 22, drop=1),
    )
    DEFAULT_CSS = """
    RunsTable { height: auto; max-height: 9; min-height: 2; overflow-x: hidden; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.marked: list[str] = []       # up to two runs picked for Compare

    def cells(self, row: RunRow) -> dict[str, Text]:
        mark = "B" if row.baseline else ""
        if row.id in self.marked:
            mark = "AB"[self.marked.index(row.id)]
        score = Text("-") if row.score is None else Text(f"{row.score:.3f} {row.passed}/{row.cases}")
        state = row.progress or row.status
        if row.progress:
            state_text = Text(state, style="bold")
        elif row.fresh is False:
            state_text = Text(f"{row.status} · stale", style="yellow")
        else:
            state_text = Text(state)
        label = row.name if row.name and row.name != row.id else row.id
        name = f"{label}  {row.id}" if label != row.id else row.id
        return {"mark": Text(mark, style="bold"), "name": Text(middle_ellipsis(name, self.width_of("name"))),
                "set": Text(row.set), "kind": Text(row.kind), "score": score, "state": state_text}

    def toggle_mark(self) -> list[str]:
        key = self.selected_key
        if key is None:
            return self.marked
        if key in self.marked:
            self.marked.remove(key)
        else:
            self.marked = (self.marked + [key])[-2:]
        self._rebuild(key)
        return self.marked
