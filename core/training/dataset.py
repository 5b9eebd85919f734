"""The training data a run trains on, from the user's file to the prepared split, in one place:
check it (formats, lengths, duplicates, leakage, PII, balance), record the tune.* data items,
save the latest report, and with `fix` write the cleaned, scrubbed, split copy. The data-check
job, `weightgate data check`, `weightgate train start` and the demo all go through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.workspace import Workspace
from weightgate.core.training.checks import record_data_evidence
from weightgate.core.training.data.prepare import (
    DataReport,
    PreparedDataset,
    blocking_error,
    check_dataset,
    save_latest_report,
    write_prepared,
)
from weightgate.core.training.preference.data import check_preference_dataset


@dataclass
class DataCheck:
    report: DataReport
    prepared: PreparedDataset | None     # the cleaned split, when `fix` asked for it and nothing blocks
    items: dict[str, str]                # tune.* item id -> the status recorded for it
    report_path: Path                    # .weightgate/data/report.json: what the Fine-tune screen shows

    @property
    def failed(self) -> bool:
        return bool(self.report.blocking) or any(status != "pass" for status in self.items.values())


def check_training_data(ws: Workspace, *, fix: bool = False, tokenizer_dir: Path | None = None,
                        report: DataReport | None = None) -> DataCheck:
    """Check the workspace's training data (or take a `report` already made), record its items and
    save the report; with `fix`, also write the prepared copy unless a problem blocks it."""
    if report is None:
        # [training] method = "dpo": the data file holds chosen/rejected pairs, checked as such.
        # Read as written: a bad [training] value is train start's error to report, not the data check's.
        training = plain(ws.config()).get("training")
        preference = isinstance(training, dict) and training.get("method") == "dpo"
        report = (check_preference_dataset if preference else check_dataset)(ws, tokenizer_dir=tokenizer_dir)
    prepared = write_prepared(ws, report) if fix and not report.blocking else None
    report_path = save_latest_report(ws, report, prepared)
    return DataCheck(report, prepared, record_data_evidence(ws, report, prepared), report_path)


def prepare_dataset(ws: Workspace, *, tokenizer_dir: Path | None = None) -> PreparedDataset:
    """The prepared split for a training run, or an InputError naming every blocking line (the
    report and the evidence are recorded either way)."""
    check = check_training_data(ws, fix=True, tokenizer_dir=tokenizer_dir)
    if check.prepared is None:
        raise blocking_error(check.report)
    return check.prepared
