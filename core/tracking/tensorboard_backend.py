"""The TensorBoard side: one run directory per record under the event-file directory
(train/<job>, eval/<run>, release/<name>/<version>), scalars by step and a text summary.

A record is written into a hidden sibling directory and renamed into place, replacing what was
there: a replay rewrites a run whole instead of appending a second copy of its scalars, and
TensorBoard never reads half a run. tensorboard is imported here only (an optional extra);
its writer needs no TensorFlow and no torch.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

from weightgate.core.tracking.mirror import Record, clean_name

STAGING_PREFIX = ".staging-"


def run_dir(root: Path, record: Record) -> Path:
    return Path(root).joinpath(*(clean_name(part).replace("/", "_") for part in record.path))


def holds(root: Path, record: Record) -> bool:
    """The record's run directory is there with its events (someone may have cleared it)."""
    directory = run_dir(root, record)
    return directory.is_dir() and any(directory.glob("events.out.tfevents.*"))


class TensorboardTarget:
    def __init__(self, root: Path) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            # Said before anything is written, with the extra that installs it (sync.py words it).
            raise ImportError("No module named 'tensorboard'", name="tensorboard")
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"cannot create the TensorBoard directory {self.root}: {exc.strerror}") from None

    def run_dir(self, record: Record) -> Path:
        return run_dir(self.root, record)

    def mirror(self, record: Record) -> dict:
        from tensorboard.compat.proto import event_pb2, summary_pb2  # lazy: the optional extra
        from tensorboard.plugins.text.summary_v2 import text_pb  # lazy: the optional extra
        from tensorboard.summary.writer.event_file_writer import EventFileWriter  # lazy: the optional extra

        target = self.run_dir(record)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f"{STAGING_PREFIX}{target.name}"
        shutil.rmtree(staging, ignore_errors=True)   # left by a write that died
        writer = EventFileWriter(str(staging))
        try:
            for point in record.metrics:
                summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=point.name,
                                                                              simple_value=point.value)])
                writer.add_event(event_pb2.Event(wall_time=point.time, step=point.step, summary=summary))
            if record.text:
                when = max((p.time for p in record.metrics), default=time.time())
                writer.add_event(event_pb2.Event(wall_time=when, step=0, summary=text_pb("summary", record.text)))
            writer.flush()
        finally:
            writer.close()
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        return {"dir": str(target)}
