"""The Evaluation screen's runs: newest first, the baseline named as such, a live row for a running eval.

Rows come from core.evaluation.runs.list_runs (run.json files, read in a thread worker); a running `eval`
job's row shows its cases done and ETA from the jobs list the App already polls. Selecting two
rows with space and pressing c opens them in the Compare screen. The Pick column says "A" / "B"
for the picked runs only; the baseline is the word "baseline" before the run's name, so the two
never share a letter. The cursor and the picks are kept by run id (FittedTable), so a run that
arrives above them (a canary, a finished eval job) does not move them to another run.
"""

from __future__ import annotations

from rich.text import Text

from weightgate.core.evaluation.views import RunRow
from weightgate.tui.widgets.fitted_table import Column, FittedTable, middle_ellipsis


class RunsTable(FittedTable):
    # At 80 columns (or with the sidebar shown) the kind, then the set, go before the state does.
    COLUMNS = (
        Column("mark", "Pick", 4),
        Column("name", "Run"),
        Column("set", "Set", 7, drop=1),
        Column("kind", "Kind", 11, drop=2),
        Column("score", "Score", 13),
        Column("state", "State", 18),
    )
    DEFAULT_CSS = """
    RunsTable { height: auto; max-height: 9; min-height: 2; overflow-x: hidden; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.marked: list[str] = []       # up to two runs picked for Compare

    def cells(self, row: RunRow) -> dict[str, Text]:
        mark = f"[{'AB'[self.marked.index(row.id)]}]" if row.id in self.marked else ""
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
        baseline = "baseline · " if row.baseline else ""
        name_text = Text(baseline, style="bold")
        name_text.append(middle_ellipsis(name, self.width_of("name") - len(baseline)))
        return {"mark": Text(mark, style="bold"), "name": name_text,
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
