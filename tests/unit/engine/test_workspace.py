"""Workspace: init template, comment-preserving round trip, bad TOML reported and untouched."""

from pathlib import Path

import pytest
import tomlkit

from weightgate.core.engine.errors import InputError, NotAWorkspace
from weightgate.core.engine.workspace import init_workspace, open_workspace


def test_init_creates_documented_layout(tmp_path):
    ws = init_workspace(tmp_path / "w")
    text = ws.config_path.read_text()
    for key in ("task", "metric", "quality_threshold", "p95_latency_ms", "min_tokens_per_s",
                "memory_budget_gib", "cost_per_1k_tasks", "hosting", "location", "data_residency",
                "commercial", "[settings]", "candidates"):
        assert key in text
    assert (ws.evals_dir / "README.md").read_text().count("scorer") >= 1
    assert (ws.evals_dir / "task.jsonl").is_file()
    for directory in (ws.state_dir, ws.jobs_dir, ws.runs_dir, ws.adapters_dir):
        assert directory.is_dir()


def test_init_never_overwrites(tmp_path):
    ws = init_workspace(tmp_path)
    ws.config_path.write_text(ws.config_path.read_text().replace('task = ""', 'task = "mine"'))
    with pytest.raises(InputError) as info:
        init_workspace(tmp_path)
    assert "already exists" in str(info.value)
    assert 'task = "mine"' in ws.config_path.read_text()


def test_round_trip_keeps_comments_and_order(tmp_path):
    ws = init_workspace(tmp_path)
    before = ws.config_path.read_text()

    def change(doc):
        doc["requirements"]["task"] = "Rewrite dates as ISO 8601, exact match counts."
        doc["decisions"]["precision"] = "bf16"

    ws.update_config(change)
    after = ws.config_path.read_text()
    # Every comment line of the template survives, in the same order.
    comments = [line for line in before.splitlines() if line.strip().startswith("#")]
    position = 0
    for line in comments:          # each found after the one before it (a comment may repeat)
        position = after.index(line, position) + len(line)
    assert 'task = "Rewrite dates as ISO 8601, exact match counts."' in after
    # A comment beside a value stays beside it.
    assert "quality_threshold = 0.0   # e.g. 0.9" in after
    assert tomlkit.parse(after)["decisions"]["precision"] == "bf16"


def test_bad_toml_reports_line_and_column_and_leaves_file(tmp_path):
    ws = init_workspace(tmp_path)
    good = ws.config_path.read_text()
    lines = good.splitlines()
    target = next(i for i, line in enumerate(lines) if line.startswith("metric ="))
    lines[target] = "metric = accuracy"  # a bare word: missing quotes
    broken = "\n".join(lines) + "\n"
    ws.config_path.write_text(broken)
    with pytest.raises(InputError) as info:
        open_workspace(tmp_path)
    error = info.value
    assert error.path == ws.config_path
    assert error.line == target + 1
    assert error.column == len("metric = ") + 1   # 1-based, at the "a" of the bare word
    assert f"weightgate.toml:{target + 1}:{len('metric = ') + 1}:" in str(error)
    assert error.hint
    # A write attempt through update_config fails the same way and changes nothing.
    with pytest.raises(InputError):
        ws.update_config(lambda doc: doc.add("x", 1))
    assert ws.config_path.read_text() == broken


@pytest.mark.parametrize("text, line, column", [
    ("foo = bar baz\n", 1, 7),              # the "b" of the bare word, as an editor counts it
    ("a = 1\n\tb = c\n", 2, 6),             # a tab is one column
    ("a = 1\na = 2\n", 2, 1),                # an error at the start of a line is column 1
    ("= 1\n", 1, 1),
    ("x = [1,\n", 1, 8),                     # end of file: just after the last character
    ("[a", 1, 3),
])
def test_toml_errors_have_editor_columns(tmp_path, text, line, column):
    from weightgate.core.engine.workspace import parse_config

    with pytest.raises(InputError) as info:
        parse_config(text, tmp_path / "weightgate.toml")
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert f"weightgate.toml:{line}:{column}:" in str(info.value)


def test_duplicate_table_is_reported(tmp_path):
    ws = init_workspace(tmp_path)
    ws.config_path.write_text(ws.config_path.read_text() + "\n[settings]\nheadroom = 0.2\n")
    with pytest.raises(InputError) as info:
        open_workspace(tmp_path)
    assert info.value.line is not None


def test_not_a_workspace(tmp_path):
    with pytest.raises(NotAWorkspace) as info:
        open_workspace(tmp_path / "nothing")
    assert "weightgate init" in str(info.value)


def test_non_utf8_config(tmp_path):
    ws = init_workspace(tmp_path)
    ws.config_path.write_bytes(b"task = \"\xff\xfe\"\n")
    with pytest.raises(InputError) as info:
        open_workspace(tmp_path)
    assert "UTF-8" in str(info.value)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    ws = init_workspace(tmp_path)
    for n in range(5):
        ws.update_config(lambda doc: doc["settings"].__setitem__("headroom", 0.2 + n / 100))
    leftovers = [p.name for p in Path(tmp_path).iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
