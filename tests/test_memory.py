"""The memory estimator (pure arithmetic), the recommendation and `record_fit`.

Reference points come from a Llama-3-8B config written here (nothing downloaded); the measured
side (estimate vs a loaded model on the CPU) is in test_memory_measure.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core import memory
from core.evidence import latest_by_item, read_evidence
from core.memory import (GiB, KiB, TrainingSetup, estimate, kv_cache_bytes, layout_from_config, layout_from_tensors,
                         lora_parameters, quantized_linear_bytes, weights)
from core.precision import (Budget, estimate_for_source, estimate_report, recommend, record_fit,
                            render_estimate_text, workspace_targets)
from core.workspace import init_workspace, template_text
from tests.hub_emulator import hub, llama_config, llama_repo_files, LlamaShape  # noqa: F401 - `hub` is a fixture

ROOT = Path(__file__).resolve().parents[1]

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
    from core.safetensors_check import validate_safetensors

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
    assert est.breakdown["adapter"] == 8 * p and est.breakdown["optimizer"] == 8 * p
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


# --- recommendation ------------------------------------------------------------------------------


def _report(budget_gib: float, context: int = 8192, batch: int = 1, train: str | None = None):
    return estimate_report(layout_from_config(LLAMA3_8B), "llama-3-8b", context=context, batch=batch, device="cuda",
                           budget=Budget(int(budget_gib * GiB), "given"), headroom=0.2, train=train)


def test_largest_precision_that_fits_native_then_int8_then_nf4():
    assert [e.precision for e in _report(80).inference] == ["bf16", "int8", "nf4"]
    assert _report(80).choice.precision == "bf16"
    assert _report(16).choice.precision == "int8"      # bf16 needs ~21 GiB with 20% headroom
    assert _report(10).choice.precision == "nf4"
    nothing = _report(4)
    assert nothing.choice.precision is None and "nothing fits" in nothing.choice.reason
    assert "int8 needs" in _report(10).choice.reason  # says why the larger ones were passed over


def test_context_and_batch_change_the_choice():
    assert _report(24, context=2048).choice.precision == "bf16"
    assert _report(24, context=8192, batch=4).choice.precision == "int8"     # KV 4 GiB + prefill transients
    assert _report(24, context=16384, batch=3).choice.precision == "nf4"


def test_training_recommendation():
    report = _report(24, context=2048, train="qlora")
    assert [e.precision for e in report.training] == ["nf4"]
    assert report.training_choice.precision == "nf4" and report.training_choice.method == "qlora"
    report = _report(80, context=2048, train="lora")
    assert report.training_choice.precision == "bf16" and report.training_choice.method == "lora"


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
    code = ("import sys; import core.memory, core.precision, core.memory_measure; "
            "from core.precision import estimate_report; "
            "bad = [m for m in ('torch', 'transformers', 'textual', 'rich') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --- the workspace: settings, the decision, evidence ----------------------------------------------


def test_template_documents_context_and_batch():
    text = template_text("weightgate.toml")
    assert "context_length = 0" in text and "batch_size = 1" in text and "KV cache" in text


def _workspace(tmp_path: Path, model_dir: Path, *, budget_gib: float = 0, context: int = 256):
    from core.local_source import lock_local_source

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
    from core.fingerprints import plain

    targets = workspace_targets(plain(ws.config()))
    assert targets == {"context": None, "batch": 1, "headroom": 0.3, "budget_gib": None, "training": {}}


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
    from core.gates import compute_report

    report = compute_report(ws, record=False)
    for item in ("memory.weights", "memory.kv_cache", "memory.fits", "memory.largest_precision"):
        assert report.item(item).status == "pass", item


def test_record_fit_evidence_goes_stale_when_the_context_changes(tmp_path, tiny_model_dir):
    from core.fingerprints import Fingerprints

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
