"""The memory estimator (pure arithmetic), the recommendation and `record_fit`.

Reference points come from a Llama-3-8B config written here (nothing downloaded); the measured
side (estimate vs a loaded model on the CPU) is in test_measure.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hub_emulator import LlamaShape, hub, llama_config, llama_repo_files  # noqa: F401 - `hub` is a fixture

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import latest_by_item, read_evidence
from weightgate.core.engine.workspace import init_workspace, template_text
from weightgate.core.memory import estimate as memory
from weightgate.core.memory.checks import record_fit
from weightgate.core.memory.estimate import (
    GiB,
    KiB,
    TrainingSetup,
    candidate_precisions,
    estimate,
    kv_cache_bytes,
    lora_parameters,
    quantized_linear_bytes,
    weights,
)
from weightgate.core.memory.layout import layout_from_config, layout_from_tensors
from weightgate.core.memory.precision import Budget, estimate_for_source, estimate_report, recommend, workspace_targets
from weightgate.core.memory.report_text import render_estimate_text

ROOT = Path(__file__).resolve().parents[3]

LLAMA3_8B = {   # meta-llama/Meta-Llama-3-8B config.json (the fields that matter)
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "vocab_size": 128256, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "attention_bias": False, "mlp_bias": False,
}
MISTRAL_7B = {   # mistralai/Mistral-7B-v0.1: every layer uses a 4096-token window
    "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "vocab_size": 32000, "max_position_embeddings": 32768, "sliding_window": 4096, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
GEMMA2_9B = {   # google/gemma-2-9b: head_dim 256 (not hidden / heads), sliding and global layers alternate
    "architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "hidden_size": 3584, "intermediate_size": 14336,
    "num_hidden_layers": 42, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256,
    "vocab_size": 256000, "max_position_embeddings": 8192, "sliding_window": 4096,
    "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(42)],
    "tie_word_embeddings": True, "torch_dtype": "bfloat16",
}


# --- reference points from a Llama-3-8B config ---------------------------------------------------


def test_llama3_8b_reference_points():
    layout = layout_from_config(LLAMA3_8B)
    assert layout.parameter_count == 8_030_261_248              # the published count
    assert kv_cache_bytes(layout, batch=1, seq=1, dtype_bytes=2) == 128 * KiB
    assert lora_parameters(layout, r=16, targets="all-linear") == 41_943_040
    nf4 = weights(layout, "nf4", "cuda").total
    assert 5.3 * GiB <= nf4 <= 5.6 * GiB, nf4 / GiB
    bf16 = weights(layout, "bf16", "cuda").total
    assert bf16 == 2 * 8_030_261_248 + layout.buffer_bytes
    # 8-bit: int8 matrices + fp32 row scales; embeddings and lm_head stay fp16 on a GPU
    assert 8.3 * GiB < weights(layout, "int8", "cuda").total < 8.6 * GiB


def test_kv_cache_scales_with_context_and_batch():
    layout = layout_from_config(LLAMA3_8B)
    assert kv_cache_bytes(layout, 4, 8192, 2) == 4 * 8192 * 128 * KiB
    est = estimate(layout, "bf16", batch=4, seq=8192, device="cuda")
    assert est.breakdown["kv_cache"] == 4 * GiB


def test_sliding_window_layers_cap_the_kv_cache_at_the_window():
    mistral = layout_from_config(MISTRAL_7B)
    per_token = 2 * 2 * 8 * 128 * 32
    assert kv_cache_bytes(mistral, 1, 1000, 2) == 1000 * per_token
    assert kv_cache_bytes(mistral, 1, 32768, 2) == 4096 * per_token        # min(window, seq)
    gemma = layout_from_config(GEMMA2_9B)
    assert gemma.head_dim == 256 and len(gemma.sliding_window_layers) == 21
    layer_token = 2 * 2 * 8 * 256
    assert kv_cache_bytes(gemma, 2, 8192, 2) == 2 * layer_token * (21 * 8192 + 21 * 4096)
    assert kv_cache_bytes(gemma, 1, 2048, 2) == layer_token * 42 * 2048   # below the window: all layers alike


def test_bitsandbytes_storage_formulas():
    # LLM.int8: int8 matrix + one fp32 scale per output row (Int8Params.SCB)
    assert quantized_linear_bytes(4096, 1024, "int8") == 4096 * 1024 + 4 * 1024
    # NF4 with double quantization: packed nibbles, uint8 absmax per 64, fp32 per 256 blocks, codes
    n = 4096 * 1024
    assert quantized_linear_bytes(4096, 1024, "nf4") == n // 2 + n // 64 + 4 * (n // 64 // 256) + 1024 + 64 + 4
    assert quantized_linear_bytes(4096, 1024, "nf4", double_quant=False) == n // 2 + 4 * (n // 64) + 64


def test_only_linear_layers_are_quantized_lm_head_embeddings_norms_stay():
    layout = layout_from_config(LLAMA3_8B)
    w = weights(layout, "nf4", "cuda")
    assert w.kept_dtype == "bfloat16"
    assert w.kept_params == 2 * 128256 * 4096 + 65 * 4096      # embeddings + lm_head + norms
    assert w.quantized_params == layout.linear_params
    assert weights(layout, "nf4", "cpu").kept_dtype == "float32"   # the CPU loader keeps fp32
    assert weights(layout, "nf4", "cuda", upcast_kept=True).kept_dtype == "float32"   # k-bit training prep


def test_headers_and_config_give_the_same_layout(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    from weightgate.core.weights.safetensors_format import validate_safetensors

    info = validate_safetensors(tiny_model_dir / "model.safetensors")
    exact = layout_from_tensors([(t.name, t.shape, t.dtype) for t in info.tensors], config)
    arithmetic = layout_from_config(config, exact.parameter_count)
    assert exact.source == "headers" and not arithmetic.warnings
    for precision in ("fp32", "bf16", "int8", "nf4"):
        assert weights(exact, precision, "cpu").total == weights(arithmetic, precision, "cpu").total
    assert lora_parameters(exact) == lora_parameters(arithmetic)


def test_tied_embeddings_are_counted_once(tmp_path):
    from tiny_model import build_tiny_model

    tied = build_tiny_model(tmp_path / "tied", tie_word_embeddings=True)
    meta_layout = estimate_for_source(str(tied), budget_gib=1, device="cpu").layout
    assert meta_layout.tied and meta_layout.lm_head_params == 0


def test_training_estimate_parts():
    layout = layout_from_config(LLAMA3_8B)
    setup = TrainingSetup(method="qlora", batch=1, seq=2048, gradient_checkpointing=True)
    est = estimate(layout, "nf4", device="cuda", training=setup)
    p = lora_parameters(layout, 16, "all-linear")
    assert est.training["lora_parameters"] == p
    # fp32 adapter + grads (8P), and autocast's half copy of it (2P: half compute on a GPU)
    assert est.breakdown["adapter"] == 8 * p + 2 * p and est.breakdown["optimizer"] == 8 * p
    assert estimate(layout, "nf4", device="cpu", training=setup).breakdown["adapter"] == 8 * p   # fp32: no autocast
    assert TrainingSetup(method="qlora").gradient_checkpointing and not TrainingSetup(method="lora").gradient_checkpointing
    without = estimate(layout, "nf4", device="cuda", training=TrainingSetup(method="qlora", batch=1, seq=2048,
                                                                              gradient_checkpointing=False))
    assert without.breakdown["activations"] > 2 * est.breakdown["activations"]   # checkpointing saves memory
    longer = estimate(layout, "nf4", device="cuda", training=TrainingSetup(method="qlora", batch=2, seq=2048,
                                                                             gradient_checkpointing=False))
    assert longer.breakdown["activations"] == pytest.approx(2 * without.breakdown["activations"], rel=0.01)
    # LoRA's default targets are attention only; QLoRA's all linear layers (DESIGN defaults)
    lora = estimate(layout, "bf16", device="cuda", training=TrainingSetup(method="lora"))
    assert lora.training["lora_parameters"] == lora_parameters(layout, 16, "attention") < p


def test_prefill_logits_are_modeled():
    layout = layout_from_config(LLAMA3_8B)
    last = memory.inference_activation_bytes(layout, 1, 4096, 2)
    full = memory.inference_activation_bytes(layout, 1, 4096, 2, full_logits=True)
    assert last["logits"] == 128256 * (2 + 4)
    assert full["logits"] == 4096 * 128256 * 6 > full["layer_transient"]    # the biggest transient


def test_matmul_workspace_follows_each_compute_path():
    layout = layout_from_config(LLAMA3_8B)
    largest = 4096 * 14336                      # gate / up / down: the largest Linear
    ws = memory.matmul_workspace
    assert ws(layout, "bf16", 2, "cuda", 1000) == 0                   # cuBLAS: in the CUDA overhead
    assert ws(layout, "bf16", 2, "cpu", 1000) == 2 * largest          # the CPU GEMM packs the weight
    assert ws(layout, "nf4", 2, "cuda", 1000) == 2 * largest          # one dequantized weight
    assert ws(layout, "fp4", 4, "cpu", 1000) == 4 * largest
    assert ws(layout, "int8", 2, "cuda", 1000) == 2 * 2 * largest + 1000 * (4096 + 4 * 14336)
    est = estimate(layout, "nf4", batch=1, seq=1000, device="cuda")
    assert est.details["matmul_workspace"] == 2 * largest
    assert est.breakdown["activations"] == est.details["activations"]["total"] + 2 * largest


# --- recommendation ------------------------------------------------------------------------------


def _report(budget_gib: float, context: int = 8192, batch: int = 1, train: str | None = None):
    return estimate_report(layout_from_config(LLAMA3_8B), "llama-3-8b", context=context, batch=batch, device="cuda",
                           budget=Budget(int(budget_gib * GiB), "given"), headroom=0.2, train=train)


def test_largest_precision_that_fits_native_then_int8_then_nf4():
    report = _report(80)
    assert [e.precision for e in report.inference] == ["fp32", "bf16", "fp16", "int8", "nf4", "fp4"]
    assert report.candidates == ["bf16", "fp16", "int8", "nf4", "fp4"]     # fp32 is above the native bf16
    assert report.choice.precision == "bf16"
    assert [c["precision"] for c in report.choice.considered] == report.candidates
    assert _report(16).choice.precision == "int8"      # bf16 needs ~21 GiB with 20% headroom
    assert _report(10).choice.precision == "nf4"       # nf4 before fp4: the same bytes
    nothing = _report(4)
    assert nothing.choice.precision is None and "nothing fits" in nothing.choice.reason
    assert [c["fits"] for c in nothing.choice.considered] == [False] * 5
    assert "int8 needs" in _report(10).choice.reason  # says why the larger ones were passed over
    # an fp32 model: fp32 is native and first; an fp16 one keeps fp16 before bf16
    assert candidate_precisions(layout_from_config({**LLAMA3_8B, "torch_dtype": "float32"}))[:3] == [
        "fp32", "bf16", "fp16"]
    assert candidate_precisions(layout_from_config({**LLAMA3_8B, "torch_dtype": "float16"}))[:2] == ["fp16", "bf16"]


def test_every_precision_is_in_the_text_and_json():
    report = _report(16, train="qlora")
    text = render_estimate_text(report)
    rows = {line.split()[0] for line in text.splitlines() if line and line.split()[0] in memory.PRECISIONS}
    assert rows == set(memory.PRECISIONS)
    assert "fp32 (above native)" in text and "bf16 > fp16 > int8 > nf4 > fp4" in text
    data = json.loads(json.dumps(report.to_dict(), default=str))
    assert [e["precision"] for e in data["inference"]] == list(memory.PRECISIONS)
    assert [c["precision"] for c in data["choice"]["considered"]] == ["bf16", "fp16", "int8", "nf4", "fp4"]
    assert [e["precision"] for e in data["training"]] == ["nf4", "fp4"]
    fp16, bf16 = report.estimate_for("fp16"), report.estimate_for("bf16")
    assert fp16.total == bf16.total and report.estimate_for("fp4").total == report.estimate_for("nf4").total


def test_context_and_batch_change_the_choice():
    assert _report(24, context=2048).choice.precision == "bf16"
    assert _report(24, context=8192, batch=4).choice.precision == "int8"     # KV 4 GiB + prefill transients
    assert _report(24, context=16384, batch=3).choice.precision == "nf4"


def test_training_recommendation_keeps_the_method_asked_for():
    report = _report(24, context=2048, train="qlora")
    assert [e.precision for e in report.training] == ["nf4", "fp4"]
    assert report.training_choice.precision == "nf4" and report.training_choice.method == "qlora"
    report = _report(80, context=2048, train="lora")
    assert [e.precision for e in report.training] == ["fp32", "bf16", "fp16", "int8"]   # no 4-bit base: that is QLoRA
    assert report.training_choice.precision == "bf16" and report.training_choice.method == "lora"
    assert "LoRA training estimate fits" in report.training_choice.reason
    # a budget only QLoRA fits: --train lora says so, and never answers with a 4-bit base
    report = _report(20, context=2048, train="lora")
    assert report.training_choice.precision is None and report.training_choice.method == "lora"
    assert "QLoRA (LoRA on an nf4 base: --train qlora) needs" in report.training_choice.reason
    assert report.training_choice.reason.endswith("needs 16.35 GiB with 20% headroom: it fits") or \
        report.training_choice.reason.endswith(": it fits"), report.training_choice.reason
    assert _report(20, context=2048, train="qlora").training_choice.precision == "nf4"
    text = render_estimate_text(_report(20, context=2048, train="lora"))
    assert "(QLoRA)" not in text and "training none (LoRA)" in text and "LoRA training" in text
    text = render_estimate_text(_report(20, context=2048, train="qlora"))
    assert "training nf4 (QLoRA)" in text and "QLoRA on a 4-bit base" in text


def test_unknown_budget_decides_nothing():
    report = estimate_report(layout_from_config(LLAMA3_8B), "x", context=4096, device="cuda")
    assert report.choice.precision is None and "memory_budget_gib" in report.choice.reason
    assert recommend([]).precision is None


def test_render_text_is_plain_and_complete():
    text = render_estimate_text(_report(16, train="lora"))
    assert "\x1b" not in text and "[" not in text.split("\n")[0]
    for needle in ("bf16 (native)", "int8", "nf4", "KV cache", "does not fit", "fits", "choice   int8",
                   "adapter parameters", "+headroom"):
        assert needle in text, needle


# --- sources: hub metadata, without downloading weights -------------------------------------------


def test_estimate_from_hub_metadata_downloads_no_weights(hub):
    files = llama_repo_files()
    hub.commit("org/tiny-llama", files)
    hub.clear_log()
    report = estimate_for_source("org/tiny-llama", context=1024, batch=2, budget_gib=1, device="cpu")
    shape = LlamaShape()
    layout = report.layout
    assert layout.source == "config" and not layout.warnings       # the arithmetic matches the headers
    assert layout.parameter_count == layout.exact_parameters
    assert layout.native_precision == "bf16"
    est = report.estimate_for("bf16")
    assert est.breakdown["kv_cache"] == 2 * 2 * 2 * shape.num_key_value_heads * shape.head_dim * shape.num_hidden_layers * 1024
    for record in hub.log_for(method="GET"):
        if record.filename and record.filename.endswith(".safetensors") and record.status != 302:
            assert record.range and record.body_bytes < 4096


def test_estimate_modules_stay_torch_free():
    code = ("import sys; import weightgate.core.memory.estimate, weightgate.core.memory.precision, weightgate.core.memory.measure; "
            "from weightgate.core.memory.precision import estimate_report; "
            "bad = [m for m in ('torch', 'transformers', 'textual', 'rich') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --- the workspace: settings, the decision, evidence ----------------------------------------------


def test_template_documents_context_and_batch():
    text = template_text("weightgate.toml")
    assert "context_length = 0" in text and "batch_size = 1" in text and "KV cache" in text


def _workspace(tmp_path: Path, model_dir: Path, *, budget_gib: float = 0, context: int = 256):
    from weightgate.core.weights.local_source import lock_local_source

    ws = init_workspace(tmp_path / "ws")

    def change(doc):
        doc["requirements"]["context_length"] = context
        doc["requirements"]["batch_size"] = 2
        doc["requirements"]["ceilings"]["memory_budget_gib"] = budget_gib
    ws.update_config(change)
    lock_local_source(ws, str(model_dir))
    return ws


def test_workspace_targets_read_requirements_and_settings(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    from weightgate.core.engine.fingerprints import plain

    targets = workspace_targets(plain(ws.config()))
    assert targets == {"context": None, "batch": 1, "headroom": 0.3, "budget_gib": None, "training": {},
                       "config_path": None}


def test_record_fit_writes_the_decision_keeps_comments_and_records_evidence(tmp_path, tiny_model_dir):
    ws = _workspace(tmp_path, tiny_model_dir, budget_gib=2)
    before = ws.config_path.read_text()
    result = record_fit(ws, device="cpu")
    assert result.precision == result.recommended == "fp32"        # native fits
    doc = ws.config()
    assert doc["decisions"]["precision"] == "fp32" and "largest precision" in doc["decisions"]["precision_reason"]
    after = ws.config_path.read_text()
    assert [line for line in before.splitlines() if line.startswith("#")] == \
           [line for line in after.splitlines() if line.startswith("#")]            # comments survive
    latest = latest_by_item(read_evidence(ws))
    for item in ("memory.weights", "memory.kv_cache", "memory.fits", "memory.largest_precision"):
        assert latest[item].status == "pass", (item, latest[item].note)
    fits = latest["memory.fits"].values
    assert fits["precision"] == "fp32" and set(fits["breakdown"]) == {"weights", "kv_cache", "activations", "overhead"}
    assert fits["context"] == 256 and fits["batch"] == 2
    from weightgate.core.gates import compute_report

    report = compute_report(ws, record=False)
    for item in ("memory.weights", "memory.kv_cache", "memory.fits", "memory.largest_precision"):
        assert report.item(item).status == "pass", item


def test_record_fit_evidence_goes_stale_when_the_context_changes(tmp_path, tiny_model_dir):
    from weightgate.core.engine.fingerprints import Fingerprints

    ws = _workspace(tmp_path, tiny_model_dir, budget_gib=2)
    record_fit(ws, device="cpu")
    record = latest_by_item(read_evidence(ws))["memory.kv_cache"]
    assert not Fingerprints(ws).changed(record.fingerprints)

    def change(doc):
        doc["requirements"]["context_length"] = 512
    ws.update_config(change)
    assert Fingerprints(ws).changed(record.fingerprints) == ["requirements"]


def test_record_fit_a_smaller_choice_fails_largest_precision(tmp_path, tiny_model_dir):
    ws = _workspace(tmp_path, tiny_model_dir, budget_gib=2)
    result = record_fit(ws, "nf4", device="cpu")
    assert result.precision == "nf4" and result.recommended == "fp32"
    latest = latest_by_item(read_evidence(ws))
    assert latest["memory.fits"].status == "pass"
    assert latest["memory.largest_precision"].status == "fail"
    assert "fp32 fits too" in latest["memory.largest_precision"].note


def test_record_fit_when_nothing_fits_writes_no_decision(tmp_path, tiny_model_dir):
    ws = _workspace(tmp_path, tiny_model_dir, budget_gib=0.01)     # 10 MiB: not even the CPU runtime
    result = record_fit(ws, device="cpu")
    assert result.precision is None
    assert "precision" not in ws.config()["decisions"]
    latest = latest_by_item(read_evidence(ws))
    assert latest["memory.fits"].status == "fail" and "nothing fits" in latest["memory.fits"].note
    assert latest["memory.weights"].status == "pass"


def _set(ws, table: str, **values):
    def change(doc):
        import tomlkit

        if table not in doc:
            doc[table] = tomlkit.table()
        for key, value in values.items():
            doc[table][key] = value
    ws.update_config(change)


@pytest.mark.parametrize("value", [1.5, 0.1, 0.45, 0, -0.3, 30, "0.3", True])
def test_headroom_outside_20_to_40_percent_is_an_input_error(tmp_path, tiny_model_dir, value):
    ws = _workspace(tmp_path, tiny_model_dir, budget_gib=2)
    _set(ws, "settings", headroom=value)
    line = next(n for n, text in enumerate(ws.config_path.read_text().splitlines(), 1) if text.startswith("headroom"))
    with pytest.raises(InputError) as info:
        record_fit(ws, device="cpu")
    error = info.value
    assert error.path == ws.config_path and error.line == line
    assert "[settings] headroom" in error.message and "0.2 to 0.4" in error.message and error.hint
    assert str(error).startswith(f"{ws.config_path}:{line}: ")
    if value == 30:
        assert "headroom = 0.3" in error.hint            # a percentage, said so
    assert "precision" not in ws.config()["decisions"]   # nothing decided on a bad setting
    # the panel's and the jobs' reader says the same, and names the file even without a path
    from weightgate.core.engine.fingerprints import plain

    with pytest.raises(InputError) as bare:
        workspace_targets(plain(ws.config()))
    assert str(bare.value).startswith("weightgate.toml: [settings] headroom")


@pytest.mark.parametrize("value", [0.2, 0.3, 0.4])
def test_headroom_inside_the_range_is_used(tmp_path, tiny_model_dir, value):
    ws = _workspace(tmp_path, tiny_model_dir, budget_gib=2)
    _set(ws, "settings", headroom=value)
    result = record_fit(ws, device="cpu")
    assert result.report.headroom == value
    assert all(e.headroom == value for e in result.report.inference)


def test_training_estimate_reads_the_training_table_as_the_trainer_does(tmp_path, tiny_model_dir):
    from weightgate.core.memory.precision import estimate_for_workspace

    ws = _workspace(tmp_path, tiny_model_dir, budget_gib=2, context=256)
    default = estimate_for_workspace(ws, train="lora", device="cpu")
    layout = default.layout
    setup = default.train_setup
    # no [training] table: the trainer's defaults (core.engine.training_config.DEFAULTS)
    assert (setup.r, setup.targets, setup.batch, setup.seq, setup.gradient_checkpointing) == (16, "auto", 1, 256,
                                                                                              False)
    assert default.training[0].training["lora_parameters"] == lora_parameters(layout, 16, "all-linear")
    assert any("micro_batch" in note for note in default.notes) and any("max_seq" in note for note in default.notes)

    _set(ws, "training", r=8, target_modules=["q_proj", "v_proj"], max_seq=64, micro_batch=2,
         gradient_checkpointing=True, dropout=0.0)
    custom = estimate_for_workspace(ws, train="lora", device="cpu")
    s = custom.train_setup
    assert (s.r, s.targets, s.batch, s.seq, s.gradient_checkpointing, s.dropout) == (
        8, ["q_proj", "v_proj"], 2, 64, True, 0.0)
    est = custom.training_estimate_for("fp32")
    assert est.batch == 2 and est.seq == 64
    assert est.training["lora_parameters"] == lora_parameters(layout, 8, ["q_proj", "v_proj"])
    expected = estimate(layout, "fp32", device="cpu",
                        training=TrainingSetup(method="lora", r=8, targets=["q_proj", "v_proj"], batch=2, seq=64,
                                               gradient_checkpointing=True, dropout=0.0))
    assert est.breakdown["activations"] == expected.breakdown["activations"]
    assert est.breakdown["adapter"] == expected.breakdown["adapter"]
    # each setting moves the estimate the way it should
    base = default.training_estimate_for("fp32")
    assert est.breakdown["adapter"] < base.breakdown["adapter"]                  # r 8 on two targets
    for key, value, bigger in (("max_seq", 512, True), ("micro_batch", 4, True), ("gradient_checkpointing", False, True)):
        _set(ws, "training", **{key: value})
        moved = estimate_for_workspace(ws, train="lora", device="cpu").training_estimate_for("fp32")
        assert (moved.breakdown["activations"] > est.breakdown["activations"]) is bigger, key
        est = moved
    # a bad value is the trainer's own InputError, at its line
    _set(ws, "training", max_seq_length=128)
    with pytest.raises(InputError) as info:
        estimate_for_workspace(ws, train="lora", device="cpu")
    assert "max_seq_length" in info.value.message and info.value.path == ws.config_path and info.value.line


def test_training_target_not_in_the_model_is_noted(tmp_path, tiny_model_dir):
    from weightgate.core.memory.precision import estimate_for_workspace

    ws = _workspace(tmp_path, tiny_model_dir, budget_gib=2)
    _set(ws, "training", target_modules=["q_proj", "query"])
    report = estimate_for_workspace(ws, train="lora", device="cpu")
    assert any("no Linear named query" in note for note in report.notes)


def test_record_fit_writes_the_training_choice_keeping_comments(tmp_path, tiny_model_dir):
    ws = _workspace(tmp_path, tiny_model_dir, budget_gib=2)
    comments = [line for line in ws.config_path.read_text().splitlines() if line.lstrip().startswith("#")]
    result = record_fit(ws, device="cpu", train="lora")
    decisions = ws.config()["decisions"]
    assert result.training_precision == decisions["training_precision"] == "fp32"
    assert result.training_method == decisions["training_method"] == "lora"
    assert "LoRA r=16" in decisions["training_reason"] and "largest precision" in decisions["training_reason"]
    assert decisions["precision"] == "fp32"
    assert [line for line in ws.config_path.read_text().splitlines() if line.lstrip().startswith("#")] == comments

    result = record_fit(ws, device="cpu", train="qlora")
    decisions = ws.config()["decisions"]
    assert (decisions["training_precision"], decisions["training_method"]) == ("nf4", "qlora")
    assert "QLoRA" in decisions["training_reason"]
    assert list(decisions).count("training_precision") == 1
    # not asked: the training choice stays as it was
    record_fit(ws, device="cpu")
    assert ws.config()["decisions"]["training_method"] == "qlora"


def test_record_fit_training_that_fits_nowhere_writes_no_training_choice(tmp_path, tiny_model_dir):
    ws = _workspace(tmp_path, tiny_model_dir, budget_gib=0.75)   # inference fits, a training step does not
    _set(ws, "training", micro_batch=8, max_seq=4096)
    result = record_fit(ws, device="cpu", train="lora")
    assert result.precision is not None and result.training_precision is None
    assert "training_precision" not in ws.config()["decisions"]
    assert "nothing fits" in result.report.training_choice.reason


def test_fit_help_shows_toml_table_names():
    env = {**__import__("os").environ, "COLUMNS": "200"}
    for command, needles in (("fit", ("[decisions] precision", "[requirements] context_length",
                                      "[requirements] batch_size", "[decisions] training_precision")),
                             ("quant-check", ("[settings] quant_tolerance",))):
        done = subprocess.run([sys.executable, "-m", "weightgate", "memory", command, "--help"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        text = " ".join(done.stdout.replace("│", " ").split())
        for needle in needles:
            assert needle in text, (command, needle, text)
        assert "\\[" not in text


def test_estimate_cli_lists_every_precision(tmp_path, tiny_model_dir):
    env = dict(__import__("os").environ)
    done = subprocess.run([sys.executable, "-m", "weightgate", "memory", "estimate", str(tiny_model_dir), "--device", "cpu",
                           "--budget-gib", "1", "--context", "256", "--train", "lora", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [e["precision"] for e in data["inference"]] == list(memory.PRECISIONS)
    assert [c["precision"] for c in data["choice"]["considered"]] == list(memory.PRECISIONS)
    assert [e["precision"] for e in data["training"]] == ["fp32", "bf16", "fp16", "int8"]
    assert data["training_choice"]["method"] == "lora"
    text = subprocess.run([sys.executable, "-m", "weightgate", "memory", "estimate", str(tiny_model_dir), "--device", "cpu",
                           "--budget-gib", "1", "--context", "256"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120).stdout
    for precision in memory.PRECISIONS:
        assert any(line.startswith(precision) for line in text.splitlines()), precision
