"""The `weightgate` command as a user runs it: a real subprocess, exit codes, --json."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import phase1_ready

from weightgate.core.engine.workspace import init_workspace

ROOT = Path(__file__).resolve().parents[2]


def wg(*args, cwd=None, timeout=60):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "weightgate", *map(str, args)], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_init_then_status_json_lists_six_phases_locked_with_holders(tmp_path):
    target = tmp_path / "w"
    out = wg("init", target)
    assert out.returncode == 0, out.stderr
    out = wg("-w", target, "status", "--json")
    assert out.returncode in (0, 1), out.stderr
    data = json.loads(out.stdout)
    phases = data["phases"]
    assert [p["key"] for p in phases] == ["selection", "verification", "memory", "evaluation",
                                          "finetuning", "deployment"]
    assert all(p["items"] for p in phases)
    assert phases[0]["state"] == "open"
    for phase in phases[1:]:
        assert phase["state"] == "locked"
        assert phase["held_by"], phase["key"]
        assert all(h["phase"] < phase["number"] for h in phase["held_by"])
    # The human form says the same.
    text = wg("-w", target, "status").stdout
    assert "Phase 2 Verification: locked" in text and "held by: select.task (todo)" in text


def test_status_exit_codes_and_gate_option(tmp_path):
    ws = init_workspace(tmp_path)
    # The template's single example case fails select.evalset: a failed check exits 1.
    assert wg("-w", ws.root, "status").returncode == 1
    ws = phase1_ready(tmp_path / "ready")
    assert wg("-w", ws.root, "status").returncode == 0
    assert wg("-w", ws.root, "status", "--gate", "1").returncode == 0
    assert wg("-w", ws.root, "status", "--gate", "2").returncode == 1


def test_bad_toml_exit_2_with_line_and_column_file_untouched(tmp_path):
    ws = init_workspace(tmp_path)
    broken = ws.config_path.read_text().replace('hosting = ""', 'hosting = self-hosted')
    ws.config_path.write_text(broken)
    line = broken.splitlines().index(next(l for l in broken.splitlines() if l.startswith("hosting ="))) + 1
    out = wg("-w", ws.root, "status")
    assert out.returncode == 2
    assert f"weightgate.toml:{line}:" in out.stderr
    assert "hint:" in out.stderr
    assert "Traceback" not in out.stderr
    out = wg("-w", ws.root, "attest", "select.domain_fit", "--note", "x", "--json")
    assert out.returncode == 2
    assert json.loads(out.stdout)["line"] == line
    assert ws.config_path.read_text() == broken


def test_attest_waive_revoke(tmp_path):
    ws = phase1_ready(tmp_path)
    out = wg("-w", ws.root, "attest", "select.domain_fit", "--note", "checked the model card", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["kind"] == "attest"
    out = wg("-w", ws.root, "waive", "select.task", "--reason", "no time")
    assert out.returncode == 2 and "cannot be waived" in out.stderr
    out = wg("-w", ws.root, "waive", "select.training_quality", "--reason", "well-known model")
    assert out.returncode == 0
    data = json.loads(wg("-w", ws.root, "status", "--json").stdout)
    items = {i["id"]: i for p in data["phases"] for i in p["items"]}
    assert items["select.domain_fit"]["status"] == "pass"
    assert items["select.training_quality"]["status"] == "waived"
    assert wg("-w", ws.root, "revoke", "select.training_quality").returncode == 0
    data = json.loads(wg("-w", ws.root, "status", "--json").stdout)
    items = {i["id"]: i for p in data["phases"] for i in p["items"]}
    assert items["select.training_quality"]["status"] == "todo"
    assert wg("-w", ws.root, "attest", "no.such", "--note", "x").returncode == 2
    # Phase 1 attestations say nothing more; one for a locked phase is recorded and says so.
    assert "locked" not in wg("-w", ws.root, "attest", "select.domain_fit", "--note", "again").stderr
    out = wg("-w", ws.root, "attest", "ship.monitoring", "--note", "a nightly canary")
    assert out.returncode == 0 and out.stdout.startswith("attested ship.monitoring")
    note = [line for line in out.stderr.splitlines() if line.startswith("note: ")]
    assert len(note) == 1 and note[0].startswith("note: phase 6 is locked by select.")
    assert note[0].endswith(": this attestation is recorded, the gate stays closed")


def test_a_job_for_a_locked_phase_runs_and_says_the_gate_stays_closed(tmp_path, tiny_model_dir):
    from weightgate.core.weights.local_source import lock_local_source

    ws = phase1_ready(tmp_path / "w")
    lock_local_source(ws, str(tiny_model_dir))
    out = wg("-w", ws.root, "eval", "run", "--limit", "1", "--json")   # started, not followed
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("note: phase 4 is locked by select.")
    assert lines[0].endswith(": this eval job is recorded, the gate stays closed")
    job = json.loads(out.stdout)["job"]
    assert wg("-w", ws.root, "attach", job, timeout=180).returncode == 0   # it ran, and is recorded


def test_unknown_command_is_usage_error(tmp_path):
    assert wg("frobnicate").returncode == 2
    out = wg("-w", tmp_path / "none", "status")
    assert out.returncode == 2 and "weightgate init" in out.stderr


def test_job_from_a_killed_spawner_finishes_and_attach_replays_in_order(tmp_path):
    ws = init_workspace(tmp_path)
    env = dict(os.environ)
    spawner = subprocess.Popen([sys.executable, "-m", "weightgate", "-w", str(ws.root), "jobs", "selftest",
                                "--seconds", "2", "--interval", "0.1", "--json"],
                               env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
    job = json.loads(spawner.stdout.readline())["job"]
    os.killpg(spawner.pid, signal.SIGKILL)
    spawner.wait()
    out = wg("-w", ws.root, "attach", job[:20], "--json", timeout=60)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["kind"] == "result" and events[-1]["payload"]["status"] == "succeeded"
    assert sum(1 for e in events if e["kind"] == "progress") >= 10
    listing = json.loads(wg("-w", ws.root, "jobs", "--json").stdout)
    assert listing[0]["job_id"] == job and listing[0]["state"] == "succeeded"


def test_cancel_from_cli(tmp_path):
    ws = init_workspace(tmp_path)
    job = json.loads(wg("-w", ws.root, "jobs", "selftest", "--seconds", "60", "--json").stdout)["job"]
    deadline = time.time() + 20
    while time.time() < deadline:
        if (ws.jobs_dir / job / "events.jsonl").exists():
            break
        time.sleep(0.1)
    out = wg("-w", ws.root, "cancel", job, "--grace", "10", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"]["state"] == "cancelled"
    assert (ws.jobs_dir / job / "checkpoint.json").is_file()


def test_demo_workspace_passes_requirement_items(tmp_path):
    out = wg("demo", tmp_path / "demo", "--no-tui", "--no-model", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["created"] is True
    data = json.loads(wg("-w", tmp_path / "demo", "status", "--json").stdout)
    items = {i["id"]: i for p in data["phases"] for i in p["items"]}
    for item_id in ("select.task", "select.threshold", "select.ceilings", "select.deployment",
                    "select.intended_use", "select.evalset", "eval.size", "eval.hard_edge",
                    "eval.general_set"):
        assert items[item_id]["status"] == "pass", (item_id, items[item_id]["detail"])
    assert 20 <= items["eval.size"]["values"]["cases"] <= 50
    # Running it again reuses, never overwrites.
    again = wg("demo", tmp_path / "demo", "--no-tui", "--no-model", "--json")
    assert json.loads(again.stdout)["created"] is False


def test_demo_uses_the_workspace_option_when_no_directory_is_given(tmp_path):
    for args, target in ((("-w", tmp_path / "before", "demo"), tmp_path / "before"),
                         (("demo", "-w", tmp_path / "after"), tmp_path / "after")):
        out = wg(*args, "--no-tui", "--no-model", "--json", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["workspace"] == str(target.resolve())
        assert (target / "weightgate.toml").is_file()
    assert not (tmp_path / "demo-workspace").exists()
    # A directory argument still wins over -w (as for init).
    out = wg("-w", tmp_path / "before", "demo", tmp_path / "given", "--no-tui", "--no-model", "--json")
    assert json.loads(out.stdout)["workspace"] == str((tmp_path / "given").resolve())


def test_workspace_option_before_or_after_any_command(tmp_path):
    ws = phase1_ready(tmp_path / "ws")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = wg("-w", ws.root, "status", "--json", cwd=elsewhere)
    assert before.returncode == 0, before.stderr
    for args in (("status", "-w", ws.root, "--json"), ("status", "--json", "--workspace", ws.root),
                 ("status", f"--workspace={ws.root}", "--json")):
        after = wg(*args, cwd=elsewhere)
        assert after.returncode == 0, (args, after.stderr)
        assert json.loads(after.stdout)["workspace"] == str(ws.root)
    # Commands of the sub-apps too: each reaches the workspace (and says what it lacks there).
    for args in (("data", "check"), ("train", "gate"), ("eval", "check"), ("train", "runs"), ("jobs",),
                 ("release", "versions"), ("weights", "verify"), ("memory", "fit")):
        out = wg(*args, "-w", ws.root, "--json", cwd=elsewhere)
        assert "No such option" not in out.stderr, (args, out.stderr)
        assert str(elsewhere) not in out.stdout + out.stderr, (args, out.stdout, out.stderr)
    out = wg("eval", "check", "-w", ws.root, cwd=elsewhere)
    assert out.returncode == 0 and str(ws.root / "evals" / "task.jsonl") in out.stdout, out.stderr
    out = wg("attest", "select.domain_fit", "-w", ws.root, "--note", "read the card", "--json", cwd=elsewhere)
    assert out.returncode == 0 and json.loads(out.stdout)["item"] == "select.domain_fit", out.stderr
    # Both placements naming different directories is a usage error; the same one is fine.
    out = wg("-w", ws.root, "status", "-w", elsewhere)
    assert out.returncode == 2 and "differs" in out.stderr
    assert wg("-w", ws.root, "status", "-w", str(ws.root) + "/").returncode == 0
    # Every command's help lists it.
    assert "--workspace" in wg("train", "gate", "--help").stdout


def test_help_texts_keep_their_brackets():
    """Help is Rich markup: a literal [table] must be escaped, or Rich eats it."""
    env = {"COLUMNS": "200"}
    add = wg_env(env, "weights", "add", "--help").stdout
    assert "Appends it to [[candidates]] of weightgate.toml" in add and "org/name[@revision]" in add
    assert "Record the chosen model in [decisions]" in wg_env(env, "weights", "choose", "--help").stdout
    assert "Default: [settings] eval_batch_size" in wg_env(env, "eval", "run", "--help").stdout


def wg_env(extra: dict, *args):
    env = dict(os.environ, **extra)
    return subprocess.run([sys.executable, "-m", "weightgate", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_evalset_check_reports_every_bad_line(tmp_path):
    ws = init_workspace(tmp_path)
    path = ws.evals_dir / "task.jsonl"
    path.write_text("\n".join([
        '{"id": "a", "input": "x", "expected": "y"}',
        '{"id": "a", "input": "x", "expected": "y"}',
        '{"id": "b", "input": "x"}',
        '{"id": "c", "input": "x", "expected": "y", "scorer": "fuzzy"}',
        '{"id": "d", "input": "x", "expected": "y"',
        '{"id": "e", "input": "x", "expected": "y", "tags": ["hard"]}',
    ]) + "\n")
    out = wg("-w", ws.root, "eval", "check", "--json")
    assert out.returncode == 2
    data = json.loads(out.stdout)
    assert sorted(p["line"] for p in data["problems"]) == [2, 3, 4, 5]
    assert data["cases"] == 2
    text = wg("-w", ws.root, "eval", "check").stdout
    assert "task.jsonl:4: unknown scorer 'fuzzy'" in text


def test_compare_cli_regressions_first_and_fail_on_regression(tmp_path):
    from compare_helpers import two_runs

    ws = init_workspace(tmp_path)
    run_a, run_b = two_runs(ws)
    out = wg("-w", ws.root, "eval", "compare", run_a.id, run_b.id, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["regressions"] >= 1
    out = wg("-w", ws.root, "eval", "compare", run_a.id, run_b.id, "--fail-on-regression")
    assert out.returncode == 1
    assert out.stdout.index("regress") < out.stdout.index("improve")
