"""Training-data checks on crafted data: every planted problem found with its line, the original
untouched, the split deterministic and stable; the demo data's planted problems found and the
cleaned set clean; raw text chunked without its boilerplate."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from training_helpers import chat, crafted_lines

from weightgate.core.demo.data import PLANTED, demo_examples, demo_train_lines
from weightgate.core.demo.evalsets import DATE_CASES, GENERAL_CASES
from weightgate.core.demo.workspace import create_demo_workspace
from weightgate.core.engine.errors import InputError
from weightgate.core.gates import compute_report
from weightgate.core.training.data.pii import iban_ok, luhn_ok
from weightgate.core.training.data.prepare import check_dataset
from weightgate.core.training.dataset import prepare_dataset

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def crafted(tmp_path, tiny_model_dir):
    ws, _ = create_demo_workspace(tmp_path / "ws")
    lines, where = crafted_lines()
    path = ws.root / "data" / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return ws, path, where


def test_every_planted_problem_is_found_with_its_line(crafted, tiny_model_dir):
    ws, path, where = crafted
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    report = check_dataset(ws, tokenizer_dir=tiny_model_dir)
    # Each format read and converted.
    assert report.formats == {"chat": report.formats["chat"], "alpaca": 1, "sharegpt": 1, "text": 1}
    by_line = {unit.line: unit for unit in report.units}
    assert by_line[where["alpaca"]].messages == [
        {"role": "user", "content": "Rewrite the date as YYYY-MM-DD.\n\nthe 9th of May, 1911"},
        {"role": "assistant", "content": "1911-05-09"}]
    assert [m["role"] for m in by_line[where["sharegpt"]].messages] == ["system", "user", "assistant"]
    assert by_line[where["text"]].text.startswith("A short note")
    # Schema errors: exactly these lines, each with what and a fix.
    problems = {p.line: p for p in report.problems}
    expected = {"bad_role": "role 'bot'", "bad_json": "invalid JSON", "alpaca_no_output": "'output'",
                "sharegpt_bad_from": "from 'alien'", "unknown_format": "unknown format",
                "ends_with_user": "must end with an assistant message"}
    assert sorted(problems) == sorted(where[key] for key in expected)
    for key, words in expected.items():
        problem = problems[where[key]]
        assert words in problem.message and problem.hint and problem.path == path, (key, problem)
        assert str(problem).startswith(f"{path}:{where[key]}")
    # Duplicates: the exact copy and the near-duplicate pair, with their lines.
    assert [(g["kept"]["line"], [r["line"] for r in g["removed"]]) for g in report.exact_duplicates] == \
        [(where["chat"], [where["exact_dup"]])]
    assert [(p["a"]["line"], p["b"]["line"]) for p in report.near_duplicates] == \
        [(where["near_original"], where["near_dup"])]
    assert 0.7 <= report.near_duplicates[0]["similarity"] < 1
    from weightgate.core.training.data.near_dup import jaccard, shingles

    a, b = (shingles(by_line[where[key]].plain_text()) for key in ("other_day_a", "other_day_b"))
    assert jaccard(a, b) > 0.8            # nearly the same words, yet not reported: other numbers
    # Leakage of the task set and the general set.
    assert {(leak["line"], leak["set"], leak["case"]) for leak in report.leakage} == {
        (where["leak_task"], "task", "date-002"), (where["leak_general"], "general", "gen-001")}
    # Over-long: listed, blocking, never truncated.
    assert [(row["line"], row["tokens"] > 512) for row in report.over_long] == [(where["over_long"], True)]
    assert any("over-long" in reason for reason in report.blocking)
    # PII: every kind once, on its own line; the Luhn-failing number is not a card.
    found = {(row["kind"], row["line"]) for row in report.pii["findings"]}
    assert found == {(kind, where[kind]) for kind in ("email", "phone", "card", "iban", "ipv4", "ipv6", "ssn")}
    assert not any(row["line"] == where["not_card"] for row in report.pii["findings"])
    assert not luhn_ok("4111111111111112") and luhn_ok("4111111111111111")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE89 3704 0044 0532 0130 01")
    # Tag skew.
    assert report.tags["skewed"] and report.tags["most"] == "common" and report.tags["least"] == "edge"
    # What `weightgate data check` prints: each finding at its line.
    from weightgate.core.training.checks import decide
    from weightgate.tui.cli.data import render_data_report

    text = render_data_report(report, None, {k: v[0] for k, v in decide(report, None).items()}, False)
    assert f"= line {where['chat']} (first)" in text and f"line {where['near_dup']} (" in text
    assert f"{path}:{where['bad_json']}:" in text and "✗ token lengths" in text and "✗ tag balance" in text
    assert f"line {where['leak_task']} (" in text and "matches task case date-002" in text
    # The original is byte-identical, and preparing is refused while blocking problems remain.
    with pytest.raises(InputError) as refused:
        prepare_dataset(ws, tokenizer_dir=tiny_model_dir)
    assert f"{path}:{where['bad_role']}" in str(refused.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    # The refusal recorded what it measured: format, lengths, dedup, pii, balance fail.
    report_items = compute_report(ws, record=False)
    statuses = {item: report_items.item(item).status for item in
                ("tune.format", "tune.dedup", "tune.leakage", "tune.token_lengths", "tune.pii", "tune.balance",
                 "tune.split")}
    assert set(statuses.values()) == {"fail"}, statuses


def test_fixed_copy_is_clean_scrubbed_and_split_stably(crafted, tiny_model_dir):
    ws, path, where = crafted
    lines = path.read_text().splitlines()
    blocking = {where[key] for key in ("bad_role", "bad_json", "alpaca_no_output", "sharegpt_bad_from",
                                       "unknown_format", "ends_with_user", "over_long")}
    kept = [line for number, line in enumerate(lines, 1) if number not in blocking]
    path.write_text("\n".join(kept) + "\n")
    original = path.read_bytes()
    prepared = prepare_dataset(ws, tokenizer_dir=tiny_model_dir)
    assert path.read_bytes() == original
    assert prepared.train_path.parent.name == prepared.digest[:16]
    assert prepared.train_path.parent.parent == ws.state_dir / "data"
    records = [json.loads(line) for p in (prepared.train_path, prepared.val_path) for line in p.read_text().splitlines()]
    assert prepared.counts["train"] >= 9 * prepared.counts["val"] / 2 and prepared.counts["val"] >= 1
    # Canonical lines only; duplicates and leaked examples left out; PII replaced.
    for record in records:
        assert set(record) in ({"id", "messages"}, {"id", "text"})
    texts = "\n".join(json.dumps(r) for r in records)
    for gone in ("rewrite  MAR", "postcard", "July 4, 1976", "capital of Japan"):
        assert gone not in texts
    for secret in ("ana.lopez@example.org", "7946 0958", "4111 1111 1111 1111", "DE89 3704", "10.20.30.40",
                   "2001:db8::ff00", "123-45-6789"):
        assert secret not in texts
    assert "4111 1111 1111 1112" in texts and "[CARD]" in texts and "[EMAIL]" in texts
    # Checking the prepared files again finds nothing to fix.
    clean_path = ws.root / "data" / "clean.jsonl"
    clean_path.write_text(prepared.train_path.read_text() + prepared.val_path.read_text())
    again = check_dataset(ws, tokenizer_dir=tiny_model_dir, path=clean_path)
    assert not again.problems and not again.exact_duplicates and not again.near_duplicates
    assert not again.leakage and again.pii["total"] == 0 and not again.blocking
    # Same input -> same split and digest; appended examples never move an old one.
    records = ws.evidence_path.read_text().count("\n")
    assert prepare_dataset(ws, tokenizer_dir=tiny_model_dir).digest == prepared.digest
    assert ws.evidence_path.read_text().count("\n") == records     # nothing new measured, nothing appended
    before = check_dataset(ws, tokenizer_dir=tiny_model_dir)
    train0, val0 = ({u.id for u in part} for part in before.split_units())
    more = [json.dumps(chat(e["messages"][0]["content"], e["messages"][1]["content"]))
            for e in demo_examples(count=60, seed=99, plant=False)]
    path.write_text(path.read_text() + "\n".join(more) + "\n")
    after = check_dataset(ws, tokenizer_dir=tiny_model_dir)
    train1, val1 = ({u.id for u in part} for part in after.split_units())
    assert train0 <= train1 and val0 <= val1 and len(val1) > len(val0)
    assert 0.04 <= len(val1) / (len(train1) + len(val1)) <= 0.2


def test_demo_data_planted_problems_found_and_cleaned(tmp_path, tiny_model_dir):
    assert demo_train_lines() == demo_train_lines()            # deterministic
    lines = demo_train_lines()
    assert 300 <= len(lines) <= 500
    ws, _ = create_demo_workspace(tmp_path / "demo")
    path = ws.root / "data" / "train.jsonl"
    assert path.read_text() == "\n".join(lines) + "\n"
    report = check_dataset(ws, tokenizer_dir=tiny_model_dir)
    assert not report.problems and not report.render_problems
    assert sorted(r["id"] for g in report.exact_duplicates for r in g["removed"]) == PLANTED["exact_duplicates"]
    assert sorted(p["b"]["id"] for p in report.near_duplicates) == PLANTED["near_duplicates"]
    assert {row["id"]: row["kind"] for row in report.pii["findings"]} == PLANTED["pii"]
    assert [row["id"] for row in report.over_long] == PLANTED["over_long"]
    assert report.leakage == [] and report.leakage_sets == {"task": len(DATE_CASES), "general": len(GENERAL_CASES)}
    # Remove the over-long example (the one thing a person must fix); the rest is cleaned.
    path.write_text("".join(line + "\n" for line in lines if '"demo-long"' not in line))
    prepared = prepare_dataset(ws, tokenizer_dir=tiny_model_dir)
    assert prepared.counts["removed_duplicates"] == 4 and prepared.counts["pii_scrubbed"] == 4
    clean = ws.root / "data" / "clean.jsonl"
    clean.write_text(prepared.train_path.read_text() + prepared.val_path.read_text())
    again = check_dataset(ws, tokenizer_dir=tiny_model_dir, path=clean)
    assert (again.exact_duplicates, again.near_duplicates, again.leakage, again.over_long, again.pii["total"],
            again.blocking) == ([], [], [], [], 0, [])
    report = compute_report(ws, record=False)
    for item in ("tune.format", "tune.dedup", "tune.leakage", "tune.token_lengths", "tune.pii", "tune.balance",
                 "tune.split"):
        assert report.item(item).status == "pass", (item, report.item(item).detail)
    # ... and to the [data] thresholds it was judged with.
    ws.update_config(lambda doc: doc.add("data", {"near_duplicate_threshold": 0.9}))
    report = compute_report(ws, record=False)
    assert report.item("tune.dedup").status == "stale" and report.item("tune.pii").status == "pass"
    # The evidence is tied to the file: editing it turns every data item stale.
    path.write_text(path.read_text() + json.dumps(chat("Rewrite 1 Jan 1951 as YYYY-MM-DD.", "1951-01-01")) + "\n")
    assert compute_report(ws, record=False).item("tune.dedup").status == "stale"


def test_raw_text_is_chunked_without_boilerplate(tmp_path, tiny_model_dir):
    ws, _ = create_demo_workspace(tmp_path / "ws")
    ws.update_config(lambda doc: doc["settings"].__setitem__("train_data", "data/notes.txt"))
    banner = "Copyright 2024 Example Corp. Licensed under the Apache License, Version 2.0."
    documents = []
    for number in range(5):
        body = "\n".join(f"Document {number} paragraph {p}: the meeting on day {p} covered budgets, "
                         f"hiring and the {number}th roadmap item in detail." for p in range(40))
        documents.append(f"{banner}\n{body}\nPage footer: internal use only")
    (ws.root / "data" / "notes.txt").write_text("\n\n\n".join(documents) + "\n")
    report = check_dataset(ws, tokenizer_dir=tiny_model_dir)
    assert report.formats == {"text": 5} and not report.problems
    assert report.boilerplate["lines_removed"] == 10
    low, high = report.boilerplate["chunk_tokens"]
    assert (low, high) == (255, 510)       # 512-1024 scaled to the tiny model's 512-token context
    chunks = report.units
    assert len(chunks) > 5 and all(unit.text and unit.tokens <= 512 for unit in chunks)
    joined = "\n".join(unit.text for unit in chunks)
    assert "Copyright 2024" not in joined and "Page footer" not in joined
    for number in range(5):                 # nothing but the boilerplate is lost
        for p in range(40):
            assert f"Document {number} paragraph {p}:" in joined
    per_doc: dict[int, list] = {}
    for unit in chunks:
        per_doc.setdefault(unit.line, []).append(unit)
    assert len(per_doc) == 5
    for units in per_doc.values():
        assert len(units) >= 2 and all(unit.tokens - 2 >= low for unit in units[:-1])   # only a document's last chunk is short
    prepared = prepare_dataset(ws, tokenizer_dir=tiny_model_dir)
    first = json.loads(prepared.train_path.read_text().splitlines()[0])
    assert set(first) == {"id", "text"}


@pytest.mark.timeout(120)
def test_cli_data_check_json_and_fix(tmp_path, tiny_model_dir):
    from weightgate.core.weights.local_source import lock_local_source

    ws, _ = create_demo_workspace(tmp_path / "ws")
    lock_local_source(ws, str(tiny_model_dir))
    path = ws.root / "data" / "train.jsonl"
    path.write_text("".join(line + "\n" for line in demo_train_lines() if '"demo-long"' not in line))

    def wg(*args):
        return subprocess.run([sys.executable, "-m", "weightgate", "-w", str(ws.root), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    out = wg("data", "check", "--fix", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)
    assert data["items"] == {item: "pass" for item in ("tune.format", "tune.dedup", "tune.leakage",
                                                       "tune.token_lengths", "tune.pii", "tune.balance", "tune.split")}
    assert [pair["b"]["id"] for pair in data["near_duplicates"]] == PLANTED["near_duplicates"]
    prepared = data["prepared"]
    assert Path(prepared["train"]).parent.name == prepared["digest"][:16] and prepared["counts"]["pii_scrubbed"] == 4
    assert (ws.state_dir / "data" / "report.json").is_file()
    # The data_check job kind (what the TUI starts) does the same and logs each item.
    from weightgate.core.engine.events import JournalWriter, read_events
    from weightgate.core.engine.job_kinds import resolve
    from weightgate.core.engine.job_process import JobContext

    job_dir = tmp_path / "job"
    job_dir.mkdir()
    journal = JournalWriter(job_dir / "events.jsonl")
    context = JobContext(job_id="j1", job_dir=job_dir, params={"fix": True}, workspace=ws.root, journal=journal)
    result = resolve("data_check")(context)
    assert result["digest"] == prepared["digest"] and set(result["items"].values()) == {"pass"}
    events, _ = read_events(job_dir / "events.jsonl")
    assert any(e.kind == "log" and e.payload["message"] == "tune.dedup: pass" for e in events)


def test_a_copy_without_an_id_is_left_out_and_the_first_is_kept(tmp_path, tiny_model_dir):
    """Examples without an id are named by their content: both copies share one name, and leaving
    out the copy must not leave out the original with it (it did, and an old example vanished
    from the split when its copy was appended)."""
    ws, _ = create_demo_workspace(tmp_path / "ws")
    rows = [chat(f"Rewrite {day} March 1911 as YYYY-MM-DD.", f"1911-03-{day:02d}") for day in range(1, 12)]
    lines = [json.dumps(row) for row in rows] + [json.dumps(rows[3])]
    (ws.root / "data" / "train.jsonl").write_text("\n".join(lines) + "\n")
    report = check_dataset(ws, tokenizer_dir=tiny_model_dir)
    [group] = report.exact_duplicates
    assert group["kept"]["line"] == 4 and [r["line"] for r in group["removed"]] == [12]
    kept = report.kept_units()
    assert len(kept) == 11 and [u.line for u in kept] == list(range(1, 12))
    train, val = report.split_units()
    assert sorted(u.line for u in train + val) == list(range(1, 12))
