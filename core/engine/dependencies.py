"""Which inputs each item's evidence depends on, and why an item is what it is.

The table itself is `Item.inputs` in the checklist (plus the two records that are not an item's:
the phase-5 decision and a training run's identity); every evidence record carries exactly the
fingerprints of its item's inputs, taken from there by `record_result` and the status rules, so
the table and the code cannot drift. This module reads that table for people:
`weightgate status --why ITEM` and the README's table (`python -m weightgate.core.engine.dependencies`
prints it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from weightgate.core.engine.checklist import FINETUNING_DECISION_INPUTS, ITEMS, TRAINING_RUN_INPUTS
from weightgate.core.engine.digest import ABSENT, short
from weightgate.core.engine.fingerprints import INPUTS, Fingerprints

# The records that are not an item's, as rows of the table.
OTHER_RECORDS = (
    ("phase.finetuning", "phase 5 not needed (the baseline meets the threshold)", FINETUNING_DECISION_INPUTS),
    ("training run", "a run's identity: `train start --resume` refuses when it changed", TRAINING_RUN_INPUTS),
)


@dataclass
class InputState:
    name: str
    what: str
    recorded: str | None     # the fingerprint in the record the item was decided on; None: no record
    today: str

    @property
    def changed(self) -> bool:
        return self.recorded is not None and self.recorded != self.today

    def to_dict(self) -> dict:
        return {"input": self.name, "what": self.what, "recorded": self.recorded, "today": self.today,
                "changed": self.changed}


@dataclass
class Why:
    item: str
    title: str
    status: str
    detail: str
    live: bool                  # decided by a check at every status, not only by a record
    record: dict | None         # the evidence record the inputs were read from
    inputs: list[InputState] = field(default_factory=list)
    # Names a record carries that the table does not (an old record, or a bug: either way stale).
    undeclared: list[str] = field(default_factory=list)

    @property
    def changed(self) -> list[str]:
        return [state.name for state in self.inputs if state.changed] + self.undeclared

    def to_dict(self) -> dict:
        return {"item": self.item, "title": self.title, "status": self.status, "detail": self.detail,
                "live": self.live, "record": self.record, "inputs": [s.to_dict() for s in self.inputs],
                "undeclared": self.undeclared, "changed": self.changed}


def explain(status, prints: Fingerprints, *, live: bool) -> Why:
    """`status`: an engine.status.ItemStatus; its evidence is the record it was decided on (for a
    live item, the last check recorded)."""
    item, record = status.item, status.evidence
    recorded = dict(record.fingerprints) if record is not None else {}
    states = [InputState(name, INPUTS.get(name, name), recorded.get(name) if record is not None else None,
                         prints.get(name)) for name in item.inputs]
    if record is not None:
        for state in states:   # a record written before an input joined the table lacks it
            if state.recorded is None:
                state.recorded = "(not recorded)"
    summary = None if record is None else {
        "kind": record.kind, "status": record.status, "by": record.by, "time": record.time, "digest": record.digest}
    return Why(item.id, item.title, status.status, status.detail, live, summary, states,
               sorted(set(recorded) - set(item.inputs)))


def render_why(why: Why) -> str:
    lines = [f"{why.item}  {why.title}", f"  status   {why.status}: {why.detail}"]
    if why.record is None:
        lines.append("  decided  on no record yet" + (" (a live check decides it)" if why.live else ""))
    else:
        record = why.record
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(record["time"])) if record["time"] else "?"
        how = "live check, last recorded" if why.live else "recorded"
        lines.append(f"  decided  {how} as {record['status']} by {record['by']} ({record['kind']}, {when} UTC)")
    width = max([len(state.name) for state in why.inputs] + [5])
    lines.append(f"  {'input':<{width}}  {'at decision':<14} {'today':<14} what")
    for state in why.inputs:
        mark = "changed" if state.changed else ("same" if state.recorded is not None else "")
        lines.append(f"  {state.name:<{width}}  {_short(state.recorded):<14} {_short(state.today):<14} "
                     f"{state.what}{'  <- ' + mark if state.changed else ''}")
    for name in why.undeclared:
        lines.append(f"  {name:<{width}}  recorded, but not an input of this item any more: measure again")
    if why.changed:
        lines.append(f"  changed  {', '.join(why.changed)}"
                     + ("" if why.live else ": the record no longer counts; measure again"))
    elif why.inputs:
        lines.append("  changed  nothing since the decision")
    return "\n".join(lines)


def _short(digest: str | None) -> str:
    if digest is None:
        return "-"
    if digest == ABSENT or not digest.startswith("sha256:"):
        return digest
    return short(digest)


def table_markdown() -> str:
    """The dependency table, one row per item and per record that is not an item's."""
    names = list(INPUTS)
    lines = ["| Item | Inputs |", "|---|---|"]
    for item in ITEMS:
        lines.append(f"| `{item.id}` | {', '.join(f'`{n}`' for n in sorted(item.inputs, key=names.index))} |")
    for label, what, inputs in OTHER_RECORDS:
        lines.append(f"| {label}: {what} | {', '.join(f'`{n}`' for n in sorted(inputs, key=names.index))} |")
    lines += ["", "| Input | What it is |", "|---|---|"]
    lines += [f"| `{name}` | {what} |" for name, what in INPUTS.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table_markdown())
