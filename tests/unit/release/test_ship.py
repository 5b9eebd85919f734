"""Phase 6 on the tiny model with a real LoRA adapter (non-zero B: it changes outputs): merge and
its equality check, the registry (versions, aliases, history, atomic builds), manifest, model
card, SHA256SUMS, verify-release, rollback, health, canary, serving, and the ship.* items."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import flip_byte, make_adapter, phase1_ready
from hub_emulator import hub  # noqa: F401 - `hub` is a fixture
from release_helpers import shippable_workspace

from weightgate.core.gates import compute_report
from weightgate.core.registry import store as registry
from weightgate.core.weights.local_source import lock_local_source

CASES = 6
ROOT = Path(__file__).resolve().parents[3]
# This workspace walks phase 1 only (phases 2-5 are not the subject here): every ship and promote
# of the mechanics below goes through the recorded override.
OVERRIDE = "tests: the mechanics of ship on a workspace that walks phase 1 only"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A workspace: tiny model (apache-2.0) locked, adapter decided, one task eval run."""
    from weightgate.core.evaluation.runner import run_eval

    root = tmp_path_factory.mktemp("ship")

    def decide_adapter(ws, model):
        shutil.copytree(make_adapter(model, root / "adapter"), ws.adapters_dir / "lora1")
        ws.update_config(lambda doc: doc["decisions"].__setitem__("adapter", "lora1"))

    # Expected answers = what the adapter says for three cases, and a canary subset.
    ws, model, run = shippable_workspace(root, cases=CASES, max_new_tokens=4, canary=("c000", "c001", "c003"),
                                         before_eval=decide_adapter)
    general = [{"id": f"g{n}", "input": question, "expected": answer, "scorer": "contains"}
               for n, (question, answer) in enumerate([("What is the capital of Japan?", "Tokyo"),
                                                       ("What is 2 + 2?", "4"),
                                                       ("How many legs has a spider?", "8")])]
    (ws.evals_dir / "general.jsonl").write_text(json.dumps({"_set": {"max_new_tokens": 4}}) + "\n"
                                                + "".join(json.dumps(row) + "\n" for row in general))
    run_eval(ws, "general", device="cpu")
    return {"ws": ws, "model": model, "adapter": ws.adapters_dir / "lora1", "root": root, "run": run}


def outcome_digest(ref):
    """The content digest recomputed from the version's files and manifest (promotion must not change it)."""
    from weightgate.core.registry.manifest import content_digest, read_manifest
    from weightgate.core.registry.verify import hash_tree

    manifest = read_manifest(ref.path)
    files = {p: d for p, d in hash_tree(ref.path).items() if p not in ("manifest.toml", "README.md")}
    return content_digest(manifest, files)


def wg(*args, timeout=120):
    import os

    environment = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "weightgate", *map(str, args)], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout)


# --- merge ------------------------------------------------------------------------------------


def test_merge_check_passes_for_a_true_merge_and_catches_a_scaled_delta(env, tmp_path):
    from weightgate.core.evaluation.generation import generate_all, render
    from weightgate.core.evaluation.plan import plan_eval
    from weightgate.core.memory.loading import load_model
    from weightgate.core.release.merge import check_merge, merge_and_save, merge_refusal, prefill_logits

    ws = env["ws"]
    plan = plan_eval(ws, "task", batch_size=4)
    base = load_model(env["model"], "fp32")
    prompts = [render(base.tokenizer, plan.messages(case)) for case in plan.cases]
    ids = [case.id for case in plan.cases]
    base_out = generate_all(base, prompts, plan.settings, 4)
    loaded = load_model(env["model"], "fp32", env["adapter"])
    adapter_out = generate_all(loaded, prompts, plan.settings, 4)
    adapter_logits = prefill_logits(loaded, prompts, 4)
    # The adapter really changes outputs, or the check below would prove nothing.
    assert sum(a.token_ids != b.token_ids for a, b in zip(base_out, adapter_out)) >= CASES // 2

    merge_and_save(loaded, env["model"], tmp_path / "good")
    good = check_merge(tmp_path / "good", "fp32", ids, prompts, plan.settings, 4, adapter_out, adapter_logits)
    assert good.ok and good.cases == CASES and not good.mismatches and good.logit_deviation < 1e-4

    # A wrong merge: the delta scaled by 2 (lora_alpha doubled in a copy of the adapter).
    wrong_adapter = tmp_path / "wrong-adapter"
    shutil.copytree(env["adapter"], wrong_adapter)
    config = json.loads((wrong_adapter / "adapter_config.json").read_text())
    config["lora_alpha"] *= 2
    (wrong_adapter / "adapter_config.json").write_text(json.dumps(config))
    merge_and_save(load_model(env["model"], "fp32", wrong_adapter), env["model"], tmp_path / "wrong")
    bad = check_merge(tmp_path / "wrong", "fp32", ids, prompts, plan.settings, 4, adapter_out, adapter_logits)
    assert not bad.ok and bad.mismatches and bad.logit_deviation > 0.1
    first = bad.mismatches[0]
    reference = adapter_out[ids.index(first.id)]
    assert first.adapter_output == reference.text and first.adapter_token != first.merged_token
    assert first.adapter_token == (reference.token_ids[first.position] if first.position < len(reference.token_ids)
                                   else None)
    assert first.id in bad.summary() and f"token {first.position}" in bad.summary()
    # A wrong merge the greedy tokens cannot see (outputs already saturated by this adapter's delta):
    # the logits check catches it.
    other = make_adapter(env["model"], tmp_path / "other", seed=2)
    other_loaded = load_model(env["model"], "fp32", other)
    other_out = generate_all(other_loaded, prompts, plan.settings, 4)
    other_logits = prefill_logits(other_loaded, prompts, 4)
    shutil.copytree(other, tmp_path / "other-wrong")
    config = json.loads((tmp_path / "other-wrong" / "adapter_config.json").read_text())
    config["lora_alpha"] *= 2
    (tmp_path / "other-wrong" / "adapter_config.json").write_text(json.dumps(config))
    merge_and_save(load_model(env["model"], "fp32", tmp_path / "other-wrong"), env["model"], tmp_path / "ow")
    hidden = check_merge(tmp_path / "ow", "fp32", ids, prompts, plan.settings, 4, other_out, other_logits)
    assert not hidden.mismatches and not hidden.ok and hidden.logit_deviation > 0.1
    assert "not base + adapter" in hidden.summary()
    # bf16: the merge is done in bf16 and still matches the adapter at bf16.
    plan16 = plan_eval(ws, "task", batch_size=4)
    loaded16 = load_model(env["model"], "bf16", env["adapter"])
    adapter16 = generate_all(loaded16, prompts, plan16.settings, 4)
    logits16 = prefill_logits(loaded16, prompts, 4)
    merge_and_save(loaded16, env["model"], tmp_path / "bf16")
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    merged16 = check_merge(tmp_path / "bf16", "bf16", ids, prompts, plan16.settings, 4, adapter16, logits16)
    assert merged16.ok and 0 < merged16.logit_deviation < merged16.tolerance
    # 4-bit and 8-bit bases are refused with the reason.
    assert "re-quantized" in merge_refusal("nf4") and merge_refusal("int8") and merge_refusal("bf16") is None


# --- ship: registry, manifest, card, checksums --------------------------------------------------


def test_ship_refuses_while_phase_6_is_locked_naming_every_held_item(env):
    from weightgate.core.release.gate import GatesClosed
    from weightgate.core.release.ship import ship

    ws = env["ws"]
    held = [s.item.id for s in compute_report(ws, record=False).phase(6).held_by]
    assert held and "select.evalset" in held        # phase 1 itself fails: a 6-case eval set
    out = wg("-w", ws.root, "release", "ship")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "phase 6 is locked: shipping is held by" in out.stderr and "nothing shipped" in out.stderr
    for item in held:
        assert item in out.stderr
    assert "--override-gates --reason" in out.stderr
    # --json: the held items with their details; a reason without the flag (or the reverse) is usage.
    out = wg("-w", ws.root, "release", "ship", "--json")
    assert out.returncode == 1 and [h["id"] for h in json.loads(out.stdout)["held_by"]] == held
    assert wg("-w", ws.root, "release", "ship", "--override-gates").returncode == 2
    assert wg("-w", ws.root, "release", "ship", "--reason", "x").returncode == 2
    # The core refuses too (the TUI and the demo call it): no job path around the gate.
    with pytest.raises(GatesClosed) as refused:
        ship(ws, latency=False)
    assert [h["id"] for h in refused.value.held] == held
    assert not ws.registry_dir.exists() or not any(ws.registry_dir.rglob("manifest.toml"))
    assert not compute_report(ws, record=False).overrides


def test_ship_merged_writes_a_complete_verifiable_version_and_reship_is_a_no_op(env):
    from huggingface_hub import ModelCard

    from weightgate.core.registry.manifest import REQUIRED, read_manifest
    from weightgate.core.release.ship import ship

    ws = env["ws"]
    outcome = ship(ws, override=OVERRIDE)
    assert outcome["created"] and outcome["version"] == "v1" and outcome["relation"] == "merged"
    assert outcome["merge_check"]["cases"] == CASES and outcome["merge_check"]["mismatches"] == []
    assert outcome["merge_check"]["logit_deviation"] < 1e-4
    # A candidate, not current: promote moves current once phase 6 passes (or is overridden).
    assert outcome["candidate"] == "v1" and outcome["current"] is None
    ref = registry.resolve(ws, "candidate")
    assert ref.version == "v1" and ref.name == "tiny-base" and (ref.path / "model.safetensors").is_file()
    assert not list(ref.path.parent.glob(".staging-*"))

    manifest = read_manifest(ref.path)
    for table, keys in REQUIRED.items():
        assert table in manifest, table
        for key in keys:
            assert key in manifest[table], f"{table}.{key}"
    assert manifest["release"]["relation"] == "merged"
    assert manifest["base"]["license"] == "apache-2.0" and manifest["base"]["kind"] == "local"
    assert {f["path"] for f in manifest["base"]["files"]} >= {"model.safetensors", "config.json"}
    shipped = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert {"model.safetensors", "tokenizer.json", "config.json", "eval/task/cases.jsonl"} <= set(shipped)
    assert manifest["precision"]["name"] == "fp32" and manifest["precision"]["quantized"] is False
    assert manifest["adapter"]["present"] and manifest["adapter"]["config"]["r"] == 4
    assert manifest["adapter"]["digest"].startswith("sha256:")
    assert manifest["merge"]["decision"] == "merged" and manifest["merge"]["checked"] is True
    assert manifest["dataset"]["source"] == "fingerprint" and manifest["dataset"]["digest"] == "absent"
    task = manifest["evals"][0]
    assert task["set"] == "task" and task["run"] == env["run"]["run"] and task["identity"] == env["run"]["identity"]
    assert task["cases"] == CASES and set(task["tags"]) == {"hard", "edge", "canary"} and task["passed"] == 3
    general = manifest["evals"][1]
    assert general["set"] == "general" and general["cases"] == 3 and general["identity"].startswith("sha256:")
    assert (ref.path / "eval" / "general" / "cases.jsonl").is_file()
    assert manifest["training"]["source"] == "none"
    assert manifest["environment"]["peft"] not in ("", "absent") and manifest["code"]["git"] is False
    assert manifest["serving"]["batch_size"] == 1

    # SHA256SUMS is sha256sum's format: the system tool verifies it.
    done = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=ref.path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "manifest.toml: OK" in done.stdout and "README.md: OK" in done.stdout

    card = ModelCard.load(ref.path / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0" and data["base_model_relation"] == "finetune"
    assert data["base_model"] == "example-org/tiny-base" and data["base_model_path"] == str(env["model"])
    results = data["model-index"][0]["results"]
    assert data["model-index"][0]["name"] == "model@v1" or data["model-index"][0]["name"].endswith("@v1")
    assert results[0]["metrics"][0]["value"] == task["score"]
    assert {r["dataset"]["type"] for r in results} >= {"weightgate-task", "weightgate-task-hard",
                                                       "weightgate-task-edge", "weightgate-general"}

    # The override is in the manifest, the card, the evidence and every status.
    held = manifest["gates"]["held_by"]
    assert manifest["gates"]["open"] is False and "select.evalset" in held
    assert manifest["gates"]["override"]["reason"] == OVERRIDE
    assert f"shipped with closed gates: {', '.join(held)}, reason: {OVERRIDE}" in card.text
    items = {item["id"]: item for item in manifest["checklist"]["items"]}
    assert manifest["checklist"]["stage"] == "ship" and len(items) == 66 and {i["phase"] for i in items.values()} == set(
        range(1, 7))
    assert items["select.evalset"]["status"] == "fail" and items["select.evalset"]["evidence"].startswith("sha256:")
    with_evidence = [i for i in items.values() if i.get("evidence")]
    assert len(with_evidence) > 5 and all(i["evidence"].startswith("sha256:") and "kind" in i for i in with_evidence)
    assert "| 1 Selection | open |" in card.text and "| 6 Deployment | pending |" in card.text
    assert items["ship.health"]["status"] == "todo" and "evidence" not in items["ship.health"]
    status = wg("-w", ws.root, "status")
    assert f"⚠ override: release ship of {ref.label} with closed gates: {', '.join(held)}; reason: {OVERRIDE}" \
        in status.stdout
    assert json.loads(wg("-w", ws.root, "status", "--json").stdout)["overrides"][0]["reason"] == OVERRIDE
    report = compute_report(ws)
    assert report.item("ship.gates").status == "fail" and "shipped with closed gates" in report.item("ship.gates").detail

    # Promote: phase 6 is not passed (its earlier phases are locked), so only with the override.
    from weightgate.core.release.gate import GatesClosed
    from weightgate.core.release.promote import promote
    with pytest.raises(GatesClosed, match="promoting tiny-base@v1 is held by"):
        promote(ws)
    assert registry.read_aliases(ws, ref.name) == {"candidate": "v1"}
    promoted = promote(ws, override=OVERRIDE)
    assert promoted["current"] == "v1" and registry.read_aliases(ws, ref.name) == {"current": "v1"}
    manifest = read_manifest(ref.path)
    assert manifest["checklist"]["stage"] == "promote" and manifest["promotion"]["override"]["reason"] == OVERRIDE
    assert manifest["release"]["content_digest"] == outcome_digest(ref)
    done = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=ref.path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "with closed gates" in (ref.path / "README.md").read_text()
    assert compute_report(ws).item("ship.checksums").status == "pass"

    # Identical content again: no new version, nothing left behind.
    again = ship(ws, latency=False, override=OVERRIDE)
    assert not again["created"] and again["version"] == "v1"
    assert [v.version for v in registry.list_versions(ws, ref.name)] == ["v1"]
    assert not list(ref.path.parent.glob(".staging-*"))

    report = compute_report(ws)
    for item in ("ship.version", "ship.checksums", "ship.manifest", "ship.license", "ship.merge", "ship.serving",
                 "ship.latency"):
        assert report.item(item).status == "pass", (item, report.item(item).detail)
    assert report.item("ship.rollback").status == "fail"       # the first release has nothing before it


def test_ship_adapter_separately_moves_aliases_and_history(env):
    from weightgate.core.registry.manifest import read_manifest

    ws = env["ws"]
    # Through the CLI: a real ship job, followed to the end.
    out = wg("-w", ws.root, "release", "ship", "--no-merge", "--json", "--override-gates", "--reason", OVERRIDE,
             timeout=240)
    assert out.returncode == 0, out.stderr + out.stdout
    result = json.loads(out.stdout)
    assert result["ok"] and result["version"] == "v2" and result["relation"] == "adapter"
    assert registry.read_aliases(ws, "tiny-base") == {"current": "v1", "candidate": "v2"}
    # The candidate's rollback target is what is current now.
    assert compute_report(ws).item("ship.rollback").status == "pass"
    out = wg("-w", ws.root, "release", "promote", "--json")
    assert out.returncode == 1 and json.loads(out.stdout)["held_by"]
    out = wg("-w", ws.root, "release", "promote", "--json", "--override-gates", "--reason", OVERRIDE)
    assert out.returncode == 0, out.stderr + out.stdout
    assert json.loads(out.stdout)["current"] == "v2"
    ref = registry.resolve(ws, "current")
    assert ref.version == "v2"
    assert registry.read_aliases(ws, ref.name) == {"current": "v2", "previous": "v1"}
    files = {p.name for p in ref.path.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= files
    assert "model.safetensors" not in files                    # the base is a pointer, not a copy
    manifest = read_manifest(ref.path)
    assert manifest["release"]["relation"] == "adapter" and manifest["merge"]["decision"] == "separate"
    moves = [(h["alias"], h["from"], h["to"]) for h in registry.read_history(ws, ref.name)]
    assert moves == [("candidate", None, "v1"), ("current", None, "v1"), ("candidate", "v1", None),
                     ("candidate", None, "v2"), ("current", "v1", "v2"), ("previous", None, "v1"),
                     ("candidate", "v2", None)]
    assert compute_report(ws).item("ship.rollback").status == "pass"
    # A damaged aliases.json fails the items that read it, naming file and line; status still works.
    aliases = registry.name_dir(ws, ref.name) / "aliases.json"
    text = aliases.read_text()
    aliases.write_text(text.replace('"v1"', "v1"))
    try:
        status = compute_report(ws, record=False).item("ship.rollback")
        assert status.status == "fail" and "aliases.json:" in status.detail and "invalid JSON" in status.detail
    finally:
        aliases.write_text(text)


def test_verify_release_and_canary_name_a_flipped_byte(env):
    from weightgate.core.release.canary import run_canary

    ws = env["ws"]
    ref = registry.resolve(ws, "v2")
    target = ref.path / "adapter_model.safetensors"
    original = flip_byte(target)
    try:
        out = wg("-w", ws.root, "release", "verify", "v2", "--json")
        assert out.returncode == 1
        data = json.loads(out.stdout)
        assert data["problems"] == {"adapter_model.safetensors": "changed"}
        assert compute_report(ws).item("ship.checksums").status == "fail"
        outcome = run_canary(ws, ref)
        assert not outcome["ok"] and "adapter_model.safetensors (changed)" in outcome["detail"]
        # An extra file and a missing one are named too.
        (ref.path / "notes.txt").write_text("x")
        moved = ref.path.parent / "tokenizer.json.bak"
        (ref.path / "tokenizer.json").rename(moved)
        out = wg("-w", ws.root, "release", "verify", "v2")
        assert out.returncode == 1
        assert "extra    notes.txt" in out.stdout and "missing  tokenizer.json" in out.stdout
        moved.rename(ref.path / "tokenizer.json")
        (ref.path / "notes.txt").unlink()
        # A changed file whose SHA256SUMS line was edited to match still disagrees with the manifest.
        sums = (ref.path / "SHA256SUMS").read_text()
        new = hashlib.sha256(target.read_bytes()).hexdigest()
        old = next(line.split()[0] for line in sums.splitlines() if line.endswith("  adapter_model.safetensors"))
        (ref.path / "SHA256SUMS").write_text(sums.replace(old, new))
        out = wg("-w", ws.root, "release", "verify", "v2", "--json")
        assert out.returncode == 1
        assert json.loads(out.stdout)["problems"] == {"adapter_model.safetensors": "sums_disagree_with_manifest"}
        (ref.path / "SHA256SUMS").write_text(sums)
    finally:
        target.write_bytes(original)
    out = wg("-w", ws.root, "release", "verify", "v2")
    assert out.returncode == 0, out.stdout
    assert compute_report(ws).item("ship.checksums").status == "pass"


def test_canary_passes_on_an_intact_version(env):
    from weightgate.core.release.canary import run_canary

    ws = env["ws"]
    outcome = run_canary(ws, registry.resolve(ws, "current"))
    assert outcome["ok"], outcome["detail"]
    # The canary-tagged subset only: c000 and c001 passed at ship time, c003 did not.
    assert outcome["subset"] and outcome["cases"] == 3 and outcome["regressions"] == [] and outcome["changed"] == []
    assert outcome["score"] == pytest.approx(2 / 3)
    assert outcome["upstream"]["checked"] is False            # a local base has no upstream
    assert compute_report(ws).item("ship.canary").status == "pass"


def test_canary_exits_non_zero_on_a_regression(env):
    ws = env["ws"]
    path = ws.evals_dir / "task.jsonl"
    original = path.read_text()
    rows = [json.loads(line) for line in original.splitlines()]
    for row in rows[1:]:
        if row["id"] == "c001":
            row["expected"] = "2021-03-02"          # what passed at ship time fails now
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    try:
        out = wg("-w", ws.root, "release", "canary", "current", "--json", timeout=240)
        assert out.returncode == 1, out.stdout + out.stderr
        result = json.loads(out.stdout)
        assert result["regressions"] == ["c001"] and "1 regression(s)" in result["detail"]
    finally:
        path.write_text(original)


def test_rollback_then_health_loads_the_previous_version(env):
    from weightgate.core.release.health import check_health

    ws = env["ws"]
    out = wg("-w", ws.root, "release", "rollback", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["current"] == "v1"
    ref = registry.resolve(ws, "current")
    assert ref.version == "v1" and registry.read_aliases(ws, ref.name)["previous"] == "v2"
    assert registry.read_history(ws, ref.name)[-1]["reason"] == "rollback"
    assert ws.config()["decisions"]["release"] == ref.label
    # Custom aliases move too, with history; current/previous only by ship and rollback.
    out = wg("-w", ws.root, "release", "alias", "staging", "v2", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["staging"] == "v2"
    assert registry.resolve(ws, "staging").version == "v2"
    assert wg("-w", ws.root, "release", "alias", "current", "v2").returncode == 2
    assert registry.read_history(ws, ref.name)[-1]["alias"] == "staging"
    # Evidence about v2 (its canary) does not count for v1.
    assert compute_report(ws).item("ship.canary").status != "pass"

    out = wg("-w", ws.root, "release", "health", "current", "--json", timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["ready"] and result["version"] == ref.label
    assert result["cold_start_s"] > 0 and result["first_request_ms"] > 0 and result["probe"]["verified"] == "sha256"
    assert compute_report(ws).item("ship.health").status == "pass"

    # Timeout: exit 3, the probe killed.
    late = check_health(ref, ws.root, timeout=0.05)
    assert late.exit_code == 3 and "not ready within" in late.detail
    # Corrupted weights: not ready (1), naming the file.
    weights = ref.path / "model.safetensors"
    original = flip_byte(weights, offset=len(weights.read_bytes()) // 2)
    try:
        bad = check_health(ref, ws.root, timeout=120)
        assert bad.exit_code == 1 and "model.safetensors (changed)" in bad.detail
    finally:
        weights.write_bytes(original)
    # --sizes-only skips re-hashing but still catches a truncated file.
    tokenizer = ref.path / "tokenizer.json"
    original = tokenizer.read_bytes()
    tokenizer.write_bytes(original[:-1])
    try:
        quick = check_health(ref, ws.root, timeout=120, sizes_only=True)
        assert quick.exit_code == 1 and "tokenizer.json (size differs)" in quick.detail
    finally:
        tokenizer.write_bytes(original)
    # Bad input: exit 2.
    out = wg("-w", ws.root, "release", "health", "v9")
    assert out.returncode == 2 and "no version v9" in out.stderr


# --- serving ----------------------------------------------------------------------------------


def test_shipped_directories_load_with_plain_transformers_and_peft(env):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from weightgate.core.registry.manifest import read_manifest
    from weightgate.core.registry.serving import serve_commands

    ws = env["ws"]
    merged, adapter = registry.resolve(ws, "v1"), registry.resolve(ws, "v2")
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        merged_logits = AutoModelForCausalLM.from_pretrained(merged.path, use_safetensors=True)(ids).logits
        base = AutoModelForCausalLM.from_pretrained(env["model"], use_safetensors=True)
        base_logits = base(ids).logits
        adapter_logits = PeftModel.from_pretrained(base, str(adapter.path))(ids).logits
    assert not torch.allclose(base_logits, adapter_logits)
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-4)

    commands = serve_commands(read_manifest(adapter.path), adapter.path, ws.root)
    assert commands["vllm"].startswith(f"vllm serve {env['model']}")
    # Distinct names: the base as NAME-base, the LoRA as NAME (what was evaluated).
    assert f"--served-model-name {adapter.name}-base --enable-lora --lora-modules {adapter.name}={adapter.path}" \
        in commands["vllm"]
    assert "--dtype float32" in commands["vllm"] and f"--lora-paths {adapter.name}={adapter.path}" in commands["sglang"]
    assert commands["transformers_serve"] is None and "adapter" in commands["refused"]["transformers_serve"]
    manifest = read_manifest(merged.path)
    manifest["precision"].update(name="nf4", quantization={"method": "bitsandbytes", "bits": 4, "quant_type": "nf4",
                                                           "double_quant": True})
    manifest["serving"]["context_length"] = 2048
    quantized = serve_commands(manifest, merged.path, ws.root)
    assert "--quantization bitsandbytes" in quantized["vllm"] and "--max-model-len 2048" in quantized["vllm"]
    assert "--quantization bnb-4bit" in quantized["transformers_serve"] and "--context-length 2048" in quantized["sglang"]
    out = wg("-w", ws.root, "release", "versions", "--json")
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    assert [(v["version"], v["aliases"]) for v in listing["versions"]] == [("v1", ["current"]),
                                                                          ("v2", ["previous", "staging"])]
    assert listing["versions"][1]["serve"]["vllm"] == commands["vllm"]


# --- failures leave nothing half-built ------------------------------------------------------------


def test_a_crash_mid_ship_leaves_no_version_and_a_token_is_never_shipped(env, monkeypatch):
    import weightgate.core.release.ship
    from weightgate.core.release.ship import ShipRefused, ship

    ws = env["ws"]
    name = registry.default_name(ws)
    before = [v.version for v in registry.list_versions(ws, name)]
    ws.update_config(lambda doc: doc["decisions"].__setitem__("merge", False))

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    # A different training table makes the content new, so the ship would create v3.
    ws.update_config(lambda doc: doc.__setitem__("training", {"r": 4, "seed": 7}))
    monkeypatch.setattr(weightgate.core.release.ship, "card_text", crash)   # where ship looks it up
    with pytest.raises(RuntimeError):
        ship(ws, latency=False, override=OVERRIDE)
    monkeypatch.undo()
    assert [v.version for v in registry.list_versions(ws, name)] == before
    assert not list((ws.registry_dir / name).glob(".staging-*"))
    # A staging directory left by a killed ship is not a version, and old ones are cleaned.
    stale = registry.new_staging(ws, name)
    (stale / "model.safetensors").write_bytes(b"half")
    assert [v.version for v in registry.list_versions(ws, name)] == before
    import os
    os.utime(stale, (0, 0))
    registry.clean_stale_staging(ws, name)
    assert not stale.exists()

    token = "hf_" + "A1b2C3d4" * 5
    monkeypatch.setenv("HF_TOKEN", token)
    ws.update_config(lambda doc: doc["training"].__setitem__("note", f"pushed with {token}"))
    with pytest.raises(ShipRefused, match="token"):
        ship(ws, latency=False, override=OVERRIDE)
    assert [v.version for v in registry.list_versions(ws, name)] == before
    assert not any(token in p.read_text(errors="ignore") for p in ws.registry_dir.rglob("*") if p.is_file())

    ws.update_config(lambda doc: doc["training"].__delitem__("note"))
    outcome = ship(ws, latency=False, override=OVERRIDE)
    assert outcome["created"] and outcome["relation"] == "adapter"
    from weightgate.core.registry.manifest import read_manifest
    assert read_manifest(Path(outcome["path"]))["training"] == {"source": "weightgate.toml [training]", "r": 4,
                                                                 "seed": 7}
    # The same content again, but its registry copy was damaged: an intact copy ships as a new version.
    flip_byte(Path(outcome["path"]) / "adapter_model.safetensors")
    messages = []
    again = ship(ws, latency=False, log=messages.append, override=OVERRIDE)
    assert again["created"] and again["version"] != outcome["version"]
    assert any("no longer match" in m and "adapter_model.safetensors (changed)" in m for m in messages)
    assert registry.resolve(ws, "candidate").version == again["version"]


def test_upstream_moved_is_reported_against_the_hub(hub):
    from weightgate.core.release.canary import upstream_state

    first = hub.commit("org/tiny", {"config.json": b"{}"})
    manifest = {"base": {"kind": "hub", "repo": "org/tiny", "revision": "main", "commit": first}}
    assert upstream_state(manifest, hub.url) == {"checked": True, "moved": False, "revision": "main",
                                                 "commit": first, "now": first,
                                                 "detail": f"org/tiny@main still at the locked {first[:12]}"}
    second = hub.commit("org/tiny", {"config.json": b'{"a": 1}'})
    moved = upstream_state(manifest, hub.url)
    assert moved["moved"] and moved["now"] == second and "re-evaluate" in moved["detail"]
    unreachable = upstream_state(manifest, "http://127.0.0.1:9")
    assert unreachable["checked"] is False and "upstream not checked" in unreachable["detail"]


def test_merge_into_a_quantized_base_is_refused_with_the_reason(env):
    from weightgate.core.engine.errors import InputError
    from weightgate.core.release.ship import plan_ship

    ws = env["ws"]
    ws.update_config(lambda doc: doc["decisions"].__setitem__("precision", "nf4"))
    try:
        with pytest.raises(InputError, match="refusing to merge.*re-quantized"):
            plan_ship(ws, merge=True)
    finally:
        ws.update_config(lambda doc: doc["decisions"].__delitem__("precision"))


def test_manifest_training_block_takes_the_training_runs_config_and_seed(tmp_path):
    from weightgate.core.registry.manifest import training_block

    best = tmp_path / "run1" / "best"
    best.mkdir(parents=True)
    (tmp_path / "run1" / "run.json").write_text(json.dumps({
        "run_id": "run1", "config": {"r": 16, "alpha": 32, "lr": 2e-4, "seed": 42}, "method": "lora",
        "dataset_digest": "abc", "train_examples": 90, "outcome": {"status": "finished", "best_step": 40}}))
    block = training_block({"training": {"r": 16, "epochs": 2}}, best)
    assert block["source"] == "training run run1" and block["seed"] == 42 and block["epochs"] == 2
    assert block["run"]["config"]["lr"] == 2e-4 and block["run"]["train_examples"] == 90
    assert block["run"]["outcome"]["best_step"] == 40
    assert training_block({}, None) == {"source": "none",
                                        "note": "no [training] table in weightgate.toml and no training run"}


def test_adapter_on_a_4bit_base_ships_separately_and_the_probe_loads_it_with_bitsandbytes(env, tmp_path):
    from weightgate.core.evaluation.runner import run_eval
    from weightgate.core.registry.manifest import read_manifest
    from weightgate.core.registry.serving import serve_commands
    from weightgate.core.release.health import check_health
    from weightgate.core.release.ship import ship

    ws = phase1_ready(tmp_path / "ws4")
    lines = (env["ws"].evals_dir / "task.jsonl").read_text().splitlines()[:4]
    (ws.evals_dir / "task.jsonl").write_text("\n".join(lines) + "\n")
    lock_local_source(ws, str(env["model"]))
    shutil.copytree(env["adapter"], ws.adapters_dir / "lora1")

    def decide(doc):
        doc["decisions"]["adapter"] = "lora1"
        doc["decisions"]["precision"] = "nf4"
    ws.update_config(decide)
    run_eval(ws, "task", device="cpu")
    outcome = ship(ws, latency=False, override=OVERRIDE)
    assert outcome["relation"] == "adapter" and outcome["merge"] == "refused"
    manifest = read_manifest(Path(outcome["path"]))
    assert manifest["precision"]["quantized"] and manifest["precision"]["quantization"]["quant_type"] == "nf4"
    assert "re-quantized" in manifest["merge"]["reason"]
    ref = registry.resolve(ws, "candidate")
    assert "--quantization bitsandbytes" in serve_commands(manifest, ref.path, ws.root)["vllm"]
    probe = check_health(ref, ws.root, timeout=180)
    assert probe.exit_code == 0, probe.detail


def test_ship_promote_chains_health_canary_and_asks_promote_its_own_question(env):
    ws = env["ws"]
    ws.update_config(lambda doc: doc.__setitem__("training", {"r": 4, "seed": 11}))   # new content
    try:
        out = wg("-w", ws.root, "release", "ship", "--no-merge", "--promote", "--override-gates", "--reason",
                 OVERRIDE, "--json", timeout=400)
        steps = json.loads(out.stdout)
        assert list(steps) == ["ship", "health", "canary", "promote"]
        assert steps["health"]["ready"] and steps["canary"]["ok"]
        # The override was for phases 1-5; promote asks its own question and phase 6 has not passed:
        # the candidate stays, exit 1.
        assert out.returncode == 1 and not steps["promote"]["ok"] and steps["promote"]["held_by"]
        version = steps["ship"]["version"]
        assert registry.read_aliases(ws, "tiny-base")["candidate"] == version
        # Rollback is not a way around promote: a version never current is refused (exit 1).
        out = wg("-w", ws.root, "release", "rollback", version)
        assert out.returncode == 1 and "was never current" in out.stderr and "release promote" in out.stderr
        out = wg("-w", ws.root, "release", "promote", "--override-gates", "--reason", OVERRIDE, "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["current"] == version == registry.resolve(ws, "current").version
        assert "candidate" not in registry.read_aliases(ws, "tiny-base")
        # Without the override the ship itself is refused before any job.
        ws.update_config(lambda doc: doc["training"].__setitem__("seed", 12))
        out = wg("-w", ws.root, "release", "ship", "--no-merge", "--promote", "--json", timeout=400)
        assert out.returncode == 1 and json.loads(out.stdout)["held_by"]
    finally:
        ws.update_config(lambda doc: doc.__delitem__("training"))


def test_audit_rederives_files_runs_and_the_adapter(env):
    from weightgate.core.release.audit import audit

    ws = env["ws"]
    ref = registry.resolve(ws, "v1")                   # merged, shipped and promoted with the override
    report = audit(ws, ref)
    assert report.holds, report.findings
    assert report.stage == "promote" and any(c.startswith("gates: overridden") for c in report.checked)
    assert any(c.startswith("eval task: run ") for c in report.checked)
    # The adapter it was made from changed since: named, with both digests.
    weights = env["adapter"] / "adapter_model.safetensors"
    original = flip_byte(weights)
    try:
        found = audit(ws, ref).findings
        assert [(f.area, f.subject) for f in found] == [("adapter", str(env["adapter"].resolve()))]
    finally:
        weights.write_bytes(original)
    # The eval run it names was re-scored by hand: the run differs; the shipped copy still matches.
    run_json = ws.runs_dir / env["run"]["run"] / "run.json"
    text = run_json.read_text()
    data = json.loads(text)
    data["summary"]["score"] = 1.0
    run_json.write_text(json.dumps(data))
    try:
        out = wg("-w", ws.root, "release", "audit", "v1")
        assert out.returncode == 1 and "DIFFERS  evals" in out.stdout and "score 1.0" in out.stdout
    finally:
        run_json.write_text(text)
    # A run deleted: that check cannot be made (listed, not a difference); a shipped file edited is.
    moved = run_json.parent.with_name("moved-away")
    run_json.parent.rename(moved)
    card = ref.path / "README.md"
    card_text = card.read_text()
    card.write_text(card_text + "\nedited by hand\n")
    try:
        report = audit(ws, ref)
        assert any(line.startswith(f"eval run {env['run']['run']}") for line in report.unchecked)
        assert [(f.area, f.subject) for f in report.findings] == [("files", "README.md")]
    finally:
        moved.rename(run_json.parent)
        card.write_text(card_text)
    assert wg("-w", ws.root, "release", "audit", "v1").returncode == 0
