"""Memory estimates from metadata alone: weights per precision, KV cache, activations, LoRA /
QLoRA training, overhead; a breakdown and a total per precision, each checked against a budget.

Pure arithmetic: no torch, no file or network access (the TUI re-estimates on every key press).
The model's shape comes as a `Layout`, built either from the safetensors headers (every tensor's
name and shape: exact) or from config.json (architecture arithmetic, reconciled with the exact
parameter count of the headers when known).

Formulas (bytes; T = batch x seq tokens, h hidden, I intermediate, kv = kv_heads x head_dim,
V vocab, L layers, b = bytes of the compute dtype, P = LoRA parameters):

weights      non-quantized tensors at the dtype the loader gives them (`core.memory.loading.
             precision_spec`: 16-bit on a GPU, fp32 on the CPU for int8/nf4/fp4); quantized
             Linear layers (every nn.Linear except lm_head: transformers' bnb integration skips
             the output embedding, tied weights and `llm_int8_skip_modules`; embeddings and norms
             are not Linear) as bitsandbytes stores them, measured on this stack:
               int8 (LLM.int8)  n int8 + out_features x fp32 row scales (Int8Params.SCB)
               nf4 / fp4        ceil(n/2) packed + ceil(n/64) absmax: uint8 with double
                                quantization (+ fp32 absmax per 256 blocks + a 256-entry fp32
                                code), fp32 without; + a 16-entry fp32 code and an fp32 offset
                                per layer
kv cache     2 x batch x b x kv_heads x head_dim x (full layers x seq + window layers x
             min(window, seq)); head_dim from config.head_dim when present
inference    prefill transient of one layer: T x (b (2h + 3I) + 8h) (residual, normed input,
             gate, up, act; RMSNorm works in fp32) + logits: batch x (1, or seq with
             full_logits) x V x (b + 4) (generate keeps the last position and upcasts to fp32)
             + the matmul workspace of the largest Linear (training too; see matmul_workspace):
             1 x its matrix at the compute dtype for 32/16-bit on the CPU (GEMM packing) and for
             nf4/fp4 (the dequantized weight), 2 x for int8 plus T x (in + 4 out) (the int8
             activation and the int32 accumulator); 0 for 32/16-bit on a GPU
training     adapter P = sum r (in + out) over the targets, in fp32 (peft's default
             autocast_adapter_dtype): weights 4P (they are the master copy: no other), grads
             4P, AdamW exp_avg + exp_avg_sq 8P, so 16P; activations saved for backward, counted
             tensor by tensor with saved_tensors_hooks on a transformers Llama (SDPA, SwiGLU,
             RMSNorm) with peft LoRA, per layer and token:
               8h                   the two RMSNorm inputs, upcast to fp32
               b (2h + 2kv)         SDPA: q (after RoPE), output, k, v (lse is per head: small)
               3 b I                SwiGLU: act input, act output, up output
               (m + a) in           per LoRA target with dropout: the dropout mask (m: fp32
                                    on the CPU, bool on CUDA) and its output (a = 4: fp32)
               a r                  per target: lora_B's input
             + top: final norm input 4h per token and the loss's log_softmax T x V x 4;
             + transient at the start of backward: its gradient and the logits' gradient
               (2 x T x V x 4) and the LoRA grads.
             Eager attention adds softmax's saved output: heads x seq per token and layer at
             fp32 (+ its cast below fp32); sdpa and flash_attention_2 keep no scores.
             Optimizer: AdamW 8P; paged 8-bit AdamW (bitsandbytes) 2 bytes a parameter + block
             absmax and quantile maps, for tensors of 4096+ elements (see optimizer_state_bytes).
             Half compute (fp16 / bf16, by the GPU: core.memory.capability) trains under
             autocast, which caches a half copy of the fp32 adapter: 2P.
             Gradient checkpointing keeps only each layer's input (L x T x h x b) plus one
             layer recomputed. Compare Korthikanti et al. 2022 ("Reducing Activation
             Recomputation in Large Transformer Models", eq. 1: sbh(34 + 5as/h) for GPT with
             full fine-tuning, eager attention and dropout): with frozen weights, SDPA (no
             s x s scores) and SwiGLU the count above is what autograd actually keeps.
overhead     CUDA context + cuBLAS workspace (~500 MiB) on a GPU. On the CPU, the runtime (per
             process, whatever the model): the Python + torch + transformers (+ peft +
             bitsandbytes) imports (~400 MiB RSS measured) and what the runtime allocates on
             first use and keeps (kernels and their caches, OpenMP / autograd thread state and
             arenas, lazy imports: ~24 MiB for inference, ~44 MiB with a training step,
             measured; it varies by machine and is measured as such, see
             core.memory.measure.warm_runtime); plus what loading this model adds besides its
             tensors (module objects ~64 KiB, the tokenizer ~5x its tokenizer.json) and what
             training adds (peft's wrappers: 0.5 MiB + 36 KiB per LoRA-wrapped Linear).
             Host-side costs are not counted against a GPU's budget.
fits         total x (1 + headroom) <= budget (budget: [requirements.ceilings]
             memory_budget_gib, else the device's free memory).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable

from weightgate.core.engine.errors import InputError
from weightgate.core.memory.capability import training_amp
from weightgate.core.memory.layout import ATTENTION_ROLES, DTYPE_BYTES, MLP_ROLES, Layout, Linear
from weightgate.core.memory.loading import ALIASES, CANONICAL, precision_spec

KiB, MiB, GiB = 1024, 1024**2, 1024**3

PRECISIONS = ("fp32", "bf16", "fp16", "int8", "nf4", "fp4")
QUANTIZED = ("int8", "nf4", "fp4")
SIXTEEN_BIT = ("bf16", "fp16")
FOUR_BIT = ("nf4", "fp4")

BNB_BLOCKSIZE_4BIT = 64                  # bitsandbytes' default 4-bit blocksize
BNB_NESTED_BLOCKSIZE = 256               # double quantization: absmax of absmax, per 256 blocks
BNB_4BIT_CODE_BYTES = 16 * 4             # quant_state.code: 16 fp32 values
BNB_OFFSET_BYTES = 4                     # quant_state.offset (double quantization)
BNB_NESTED_CODE_BYTES = 256 * 4          # state2.code: the 8-bit dynamic map, fp32

BNB_OPTIM_MIN_8BIT_SIZE = 4096          # bitsandbytes' 8-bit optimizers: smaller tensors keep fp32 state
BNB_OPTIM_BLOCKSIZE = 256                # blockwise 8-bit state: one fp32 absmax per 256 elements

CUDA_OVERHEAD_BYTES = 500 * MiB          # CUDA context + cuBLAS workspace + allocator slack
# CPU, measured on this stack (tests/bench/memory_accuracy.py prints today's figures). The
# runtime is per process, whatever the model: what the imports hold, plus what torch, oneDNN,
# bitsandbytes, OpenMP, autograd and the tokenizer library allocate on first use and keep
# (core.memory.measure.warm_runtime measures it on a throwaway copy of the model).
CPU_RUNTIME_BYTES = 400 * MiB            # python + torch + transformers + peft + bnb imported: ~390 MiB RSS
CPU_FIRST_USE_BYTES = {"inference": 24 * MiB, "training": 44 * MiB}   # first load + forward (+ backward, AdamW)
# ... and what each model adds besides its tensors:
CPU_LOAD_FIXED_BYTES = 64 * KiB          # module objects and configs of a loaded model
TOKENIZER_RSS_FACTOR = 5                 # a fast tokenizer costs ~5x its tokenizer.json
CPU_TRAIN_FIXED_BYTES = MiB // 2         # peft's model wrapper, the optimizer's param groups
CPU_TRAIN_PER_MODULE_BYTES = 36 * KiB    # each LoRA-wrapped Linear: its lora_A / lora_B / dropout modules,
                                         # AdamW's per-parameter state, heap rounding of its small tensors
TRAIN_LOSS_TRANSIENTS = 2                # T x V x 4 gradients alive at the start of backward


# --- layout: the model's shape ----------------------------------------------------------------


# --- precision ----------------------------------------------------------------------------------


def canonical_precision(name: str, native: str = "fp32") -> str:
    value = str(name or "native").strip().lower()
    value = ALIASES.get(value, value)
    if value in ("native", "auto", "default"):
        return native
    if value not in CANONICAL:
        raise InputError(f"unknown precision {name!r}", hint="one of: native, " + ", ".join(CANONICAL))
    return value


def loader_dtype(precision: str, device: str, capability=None) -> str:
    """The dtype the loader gives the non-quantized tensors (and computes in): the eval engine's
    own rule (core.memory.loading.precision_spec, bf16 or fp16 by the GPU's capability), so the
    estimate follows what is loaded."""

    return precision_spec(precision, None, device, capability, check=False)["dtype"]


def is_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


# --- weights --------------------------------------------------------------------------------


def quantized_linear_bytes(in_features: int, out_features: int, precision: str, *, double_quant: bool = True) -> int:
    """One Linear weight as bitsandbytes stores it (see the module doc)."""
    n = in_features * out_features
    if precision == "int8":
        return n + 4 * out_features                       # int8 CB + fp32 SCB per output row
    if precision in ("nf4", "fp4"):
        blocks = -(-n // BNB_BLOCKSIZE_4BIT)
        packed = -(-n // 2)
        if double_quant:
            nested = -(-blocks // BNB_NESTED_BLOCKSIZE)
            return packed + blocks + 4 * nested + BNB_NESTED_CODE_BYTES + BNB_4BIT_CODE_BYTES + BNB_OFFSET_BYTES
        return packed + 4 * blocks + BNB_4BIT_CODE_BYTES
    raise ValueError(f"{precision} is not a bitsandbytes precision")


@dataclass
class Weights:
    precision: str
    kept_dtype: str                 # dtype of everything not quantized
    quantized_params: int
    quantized_bytes: int            # packed weights + scales / absmax / codes
    kept_params: int
    kept_bytes: int
    buffer_bytes: int

    @property
    def total(self) -> int:
        return self.quantized_bytes + self.kept_bytes + self.buffer_bytes


def weights(layout: Layout, precision: str, device: str = "cuda", *, double_quant: bool = True,
            upcast_kept: bool = False, capability=None) -> Weights:
    """Weight memory at `precision`. upcast_kept: k-bit training preparation (peft's
    prepare_model_for_kbit_training) casts every non-quantized 16-bit tensor to fp32."""
    kept_dtype = loader_dtype(precision, device, capability)
    if upcast_kept and precision in QUANTIZED:
        kept_dtype = "float32"
    kept_bytes_each = DTYPE_BYTES[kept_dtype]
    kept = layout.embedding_params + layout.lm_head_params + layout.other_params + layout.bias_params
    if precision in QUANTIZED:
        qbytes = sum(quantized_linear_bytes(l.in_features, l.out_features, precision, double_quant=double_quant)
                     * l.count for l in layout.linears)
        return Weights(precision, kept_dtype, layout.linear_params, qbytes, kept, kept * kept_bytes_each,
                       layout.buffer_bytes)
    kept += layout.linear_params
    return Weights(precision, kept_dtype, 0, 0, kept, kept * kept_bytes_each, layout.buffer_bytes)


# --- KV cache -------------------------------------------------------------------------------


def kv_cache_bytes(layout: Layout, batch: int, seq: int, dtype_bytes: int) -> int:
    """2 x batch x bytes x kv_heads x head_dim x (full layers x seq + window layers x min(window, seq))."""
    window_layers = 0
    if layout.sliding_window:
        window_layers = (len(layout.sliding_window_layers) if layout.sliding_window_layers is not None
                         else layout.num_layers)
    full_layers = layout.num_layers - window_layers
    positions = full_layers * seq + window_layers * min(layout.sliding_window or seq, seq)
    return 2 * batch * dtype_bytes * layout.num_kv_heads * layout.head_dim * positions


# --- activations ------------------------------------------------------------------------------


def inference_activation_bytes(layout: Layout, batch: int, seq: int, dtype_bytes: int, *,
                               full_logits: bool = False) -> dict:
    tokens = batch * seq
    h, inter = layout.hidden_size, layout.intermediate_size
    layer = tokens * (dtype_bytes * (2 * h + 3 * inter) + 8 * h)
    logits = batch * (seq if full_logits else 1) * layout.vocab_size * (dtype_bytes + 4)
    return {"layer_transient": layer, "logits": logits, "total": layer + logits}


def lora_targets(layout: Layout, targets: str | Iterable[str] | None, method: str = "lora") -> list[Linear]:
    """The Linear kinds LoRA wraps: "all-linear" (peft's: every Linear but the output head),
    "auto" (the trainer's, [training] target_modules = "auto": every attention and MLP
    projection), "attention", "mlp", or role names. Default: attention for LoRA, all linear for
    QLoRA (DESIGN's defaults, when no [training] table says otherwise)."""
    if targets is None:
        targets = "all-linear" if method == "qlora" else "attention"
    if isinstance(targets, str):
        if targets == "all-linear":
            return [l for l in layout.linears if l.role != "router"]
        if targets == "auto":
            return [l for l in layout.linears if l.role in ATTENTION_ROLES or l.role in MLP_ROLES]
        if targets == "attention":
            return [l for l in layout.linears if l.role in ATTENTION_ROLES]
        if targets == "mlp":
            return [l for l in layout.linears if l.role in MLP_ROLES]
        targets = [targets]
    wanted = set(targets)
    return [l for l in layout.linears if l.role in wanted]


def lora_parameters(layout: Layout, r: int = 16, targets: str | Iterable[str] | None = "all-linear",
                    method: str = "lora") -> int:
    """sum over the targets of r x (in + out)."""
    return sum(r * (l.in_features + l.out_features) * l.count for l in lora_targets(layout, targets, method))


def lora_shapes(layout: Layout, r: int, targets, method: str = "lora") -> list[tuple[int, int]]:
    """(elements, how many) of each LoRA tensor: lora_A (r x in) and lora_B (out x r) per target."""
    shapes = []
    for lin in lora_targets(layout, targets, method):
        shapes += [(r * lin.in_features, lin.count), (lin.out_features * r, lin.count)]
    return shapes


def optimizer_state_bytes(shapes: list[tuple[int, int]], optimizer: str = "adamw") -> int:
    """AdamW's two moments: fp32 (8 bytes a parameter); bitsandbytes' (paged) 8-bit AdamW keeps
    them as uint8 with an fp32 absmax per 256-element block and a 256-entry fp32 quantile map
    each, but only for tensors of 4096+ elements (smaller ones keep fp32 state), measured on
    bitsandbytes 0.50. Paging moves the state to host memory under pressure; it is counted
    on the device, where it lives while it fits."""
    if optimizer == "adamw":
        return sum(8 * n * count for n, count in shapes)
    total = 0
    for n, count in shapes:
        if n < BNB_OPTIM_MIN_8BIT_SIZE:
            total += 8 * n * count
        else:
            total += (2 * n + 2 * 4 * -(-n // BNB_OPTIM_BLOCKSIZE) + 2 * 256 * 4) * count
    return total


@dataclass
class TrainingSetup:
    method: str = "lora"                  # "lora" (16/32-bit or int8 base) | "qlora" (4-bit base)
    r: int = 16
    targets: str | list[str] | None = None
    batch: int = 1
    seq: int = 512
    gradient_checkpointing: bool | None = None   # None: on for QLoRA (peft's k-bit preparation), off for LoRA
    dropout: float = 0.05
    upcast_kept: bool = True              # QLoRA's k-bit preparation casts 16-bit non-quantized tensors to fp32
    optimizer: str = "adamw"              # "adamw" (fp32 state) | "paged_adamw_8bit" (bitsandbytes, 8-bit state)
    attn_implementation: str = "sdpa"     # "sdpa" | "flash_attention_2" (same memory) | "eager" (keeps the scores)
    notes: list[str] = field(default_factory=list)   # how the settings were read (shown with the estimate)

    def __post_init__(self) -> None:
        if self.gradient_checkpointing is None:
            self.gradient_checkpointing = self.method == "qlora"

    def to_dict(self) -> dict:
        return asdict(self)


def training_activation_bytes(layout: Layout, setup: TrainingSetup, dtype_bytes: int, device: str) -> dict:
    """Saved activations and the backward transient (see the module doc)."""
    tokens = setup.batch * setup.seq
    h, kv, inter, layers, vocab = (layout.hidden_size, layout.kv_dim, layout.intermediate_size,
                                   layout.num_layers, layout.vocab_size)
    b, a = dtype_bytes, 4
    mask = 1 if is_cuda(device) else 4
    targets = lora_targets(layout, setup.targets, setup.method)
    per_layer_targets = [(t.in_features, max(1, round(t.count / max(layers, 1)))) for t in targets]
    if setup.dropout > 0:
        lora = sum((mask + a) * fan_in * n for fan_in, n in per_layer_targets)
    else:   # identity dropout: lora_A keeps its input, cast to fp32 (a copy per target unless fp32 already)
        lora = (sum(a * fan_in * n for fan_in, n in per_layer_targets) if b != a
                else a * len({fan_in for fan_in, _ in per_layer_targets}) * h)
    lora += sum(a * setup.r * n for _, n in per_layer_targets)
    per_token_layer = 8 * h + b * (2 * h + 2 * kv) + 3 * b * inter + lora + 4 * layout.num_heads + 8
    if setup.attn_implementation == "eager":
        # Eager attention keeps softmax's fp32 output and, below fp32, its cast: heads x seq per token.
        per_token_layer += layout.num_heads * setup.seq * (4 + (b if b != 4 else 0))
    one_layer = tokens * per_token_layer
    if setup.gradient_checkpointing:
        saved_layers = layers * tokens * h * b + one_layer
    else:
        saved_layers = layers * one_layer
    top = tokens * (4 * h + 4 * vocab)                     # final norm input + log_softmax output
    transient = TRAIN_LOSS_TRANSIENTS * tokens * vocab * 4
    return {"saved_per_layer": one_layer, "saved": saved_layers + top, "transient": transient,
            "total": saved_layers + top + transient}


# --- the estimate -----------------------------------------------------------------------------


def overhead(device: str, *, tokenizer_bytes: int = 0, training: bool = False, lora_modules: int = 0) -> dict[str, int]:
    """Framework costs by part: `runtime` is the process's own (imports and first-use state, the
    same for any model), `loading` and `training` what this model adds besides its tensors."""
    if is_cuda(device):
        return {"runtime": CUDA_OVERHEAD_BYTES, "loading": 0, "training": 0}
    tokenizer = int(TOKENIZER_RSS_FACTOR * tokenizer_bytes)
    runtime = CPU_RUNTIME_BYTES + CPU_FIRST_USE_BYTES["training" if training else "inference"]
    return {"runtime": runtime, "loading": CPU_LOAD_FIXED_BYTES + tokenizer,
            "training": CPU_TRAIN_FIXED_BYTES + CPU_TRAIN_PER_MODULE_BYTES * lora_modules if training else 0}


@dataclass
class Estimate:
    precision: str
    device: str
    mode: str                             # "inference" | "training"
    batch: int
    seq: int
    breakdown: dict[str, int]             # weights, kv_cache, activations, adapter, optimizer, overhead
    details: dict = field(default_factory=dict)
    budget: int | None = None
    headroom: float = 0.3
    training: dict | None = None

    @property
    def total(self) -> int:
        return sum(self.breakdown.values())

    @property
    def required(self) -> int:
        """What the budget must hold: the total plus the headroom."""
        return int(math.ceil(self.total * (1 + self.headroom)))

    @property
    def fits(self) -> bool | None:
        return None if self.budget is None else self.required <= self.budget

    @property
    def verdict(self) -> str:
        return {None: "unknown budget", True: "fits", False: "does not fit"}[self.fits]

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(total=self.total, required=self.required, fits=self.fits)
        return data


def estimate(layout: Layout, precision: str, *, batch: int = 1, seq: int | None = None, device: str = "cuda",
             training: TrainingSetup | None = None, budget: int | None = None, headroom: float = 0.3,
             full_logits: bool = False, double_quant: bool = True, tokenizer_bytes: int = 0,
             capability=None) -> Estimate:
    """Inference (training=None) or LoRA/QLoRA training at `precision`: breakdown and total.
    `capability` (core.memory.capability): the GPU's, which decides bf16 or fp16."""
    precision = canonical_precision(precision, layout.native_precision)
    compute = loader_dtype(precision, device, capability)
    if training is not None:
        return _training_estimate(layout, precision, training, device=device, budget=budget, headroom=headroom,
                                  compute=compute, double_quant=double_quant, tokenizer_bytes=tokenizer_bytes,
                                  capability=capability)
    seq = int(seq or 1)
    b = DTYPE_BYTES[compute]
    w = weights(layout, precision, device, double_quant=double_quant, capability=capability)
    kv = kv_cache_bytes(layout, batch, seq, b)
    act = inference_activation_bytes(layout, batch, seq, b, full_logits=full_logits)
    workspace = matmul_workspace(layout, precision, b, device, batch * seq)
    over = overhead(device, tokenizer_bytes=tokenizer_bytes)
    breakdown = {"weights": w.total, "kv_cache": kv, "activations": act["total"] + workspace,
                 "overhead": sum(over.values())}
    details = {"weights": asdict(w), "activations": act, "matmul_workspace": workspace, "compute_dtype": compute,
               "overhead": over,
               "kv_per_token": kv_cache_bytes(layout, 1, 1, b) if not layout.sliding_window else None}
    return Estimate(precision, device, "inference", batch, seq, breakdown, details, budget, headroom)


def _training_estimate(layout: Layout, precision: str, setup: TrainingSetup, *, device: str, budget: int | None,
                       headroom: float, compute: str, double_quant: bool, tokenizer_bytes: int,
                       capability=None) -> Estimate:
    method = setup.method
    # peft's prepare_model_for_kbit_training runs for a 4-bit base only (core.training.model:
    # QLoRA); LoRA on an int8 base keeps the loader's dtypes.
    upcast = setup.upcast_kept and precision in FOUR_BIT
    w = weights(layout, precision, device, double_quant=double_quant, upcast_kept=upcast, capability=capability)
    amp = training_amp(precision_spec(precision, None, device, capability, check=False))
    b = DTYPE_BYTES[compute]
    if upcast and is_cuda(device):
        b = 4   # k-bit preparation: fp32 embeddings and norms keep the residual stream in fp32
    params = lora_parameters(layout, setup.r, setup.targets, method)
    act = training_activation_bytes(layout, setup, b, device)
    adapter = 4 * params                                  # fp32 adapter: also the master copy
    grads = 4 * params
    optimizer = optimizer_state_bytes(lora_shapes(layout, setup.r, setup.targets, method), setup.optimizer)
    # Autocast keeps a half copy of each fp32 adapter weight for the forward (its cast cache).
    autocast_cache = 2 * params if amp["autocast"] else 0
    workspace = matmul_workspace(layout, precision, b, device, setup.batch * setup.seq)
    modules = sum(t.count for t in lora_targets(layout, setup.targets, method))
    over = overhead(device, tokenizer_bytes=tokenizer_bytes, training=True, lora_modules=modules)
    breakdown = {"weights": w.total, "adapter": adapter + grads + autocast_cache, "optimizer": optimizer,
                 "activations": act["total"] + workspace, "overhead": sum(over.values())}
    details = {"weights": asdict(w), "activations": act, "matmul_workspace": workspace, "compute_dtype": compute,
               "overhead": over, "amp": amp, "autocast_cache_bytes": autocast_cache,
               "optimizer": setup.optimizer, "attn_implementation": setup.attn_implementation,
               "activation_bytes": b, "lora_parameters": params, "adapter_bytes": adapter, "gradient_bytes": grads}
    return Estimate(precision, device, "training", setup.batch, setup.seq, breakdown, details, budget, headroom,
                    training={**setup.to_dict(), "lora_parameters": params})


def matmul_workspace(layout: Layout, precision: str, dtype_bytes: int, device: str, tokens: int) -> int:
    """What a Linear's matmul allocates besides its input and output, for the largest Linear
    (one matmul runs at a time), from how each path computes:

    - 32/16-bit on the CPU: the GEMM (MKL / oneDNN) packs the weight operand into its own
      buffer: about one copy of the matrix at the compute dtype (measured on the demo model:
      0.75-1.0x; the torch profiler's peak of the prefill matched the rest of the estimate, the
      RSS peak was higher by this much). On a GPU cuBLAS' workspace is in the CUDA overhead.
    - nf4 / fp4: bitsandbytes dequantizes one weight per matmul (`F.dequantize_4bit(...).t()`,
      a view; backward dequantizes again after the forward's copy is gone): one matrix at the
      compute dtype (on the CPU its fused kernel's blocks and the GEMM packing, measured ~1x).
    - int8 (LLM.int8): the dequantized weight and the GEMM's copy (2x), plus the activation
      quantized row-wise to int8 (tokens x in) and the int32 accumulator (tokens x out x 4)
      before it is scaled back to the compute dtype."""
    if not layout.linears:
        return 0
    largest = max(lin.weight_params for lin in layout.linears) * dtype_bytes
    if precision == "int8":
        return 2 * largest + tokens * max(lin.in_features + 4 * lin.out_features for lin in layout.linears)
    if precision in FOUR_BIT:
        return largest
    return 0 if is_cuda(device) else largest


def estimate_all(layout: Layout, precisions: Iterable[str] | None = None, **kwargs) -> list[Estimate]:
    """One estimate per precision (every precision, largest first: see `shown_precisions`)."""
    return [estimate(layout, p, **kwargs) for p in (precisions or shown_precisions(layout))]


def candidate_precisions(layout: Layout, *, bf16: bool = True) -> list[str]:
    """The order of preference, largest first: the native dtype, the other 16-bit format, int8
    (LLM.int8) before 4-bit, NF4 before FP4. bf16 and fp16 (nf4 and fp4) cost the same bytes:
    the second of each pair is considered and shown, but fits only when the first does, so the
    first is the one chosen (bf16 keeps fp32's range; NF4 suits normally distributed weights).
    fp32 is a candidate only for an fp32 model: upcasting a 16-bit model adds memory, no
    precision. bf16=False (a GPU without native bfloat16): bf16 is no candidate."""
    native = layout.native_precision
    if native == "fp32":
        sixteen = ["fp32", *SIXTEEN_BIT]
    else:
        sixteen = [native, *(p for p in SIXTEEN_BIT if p != native)]
    if not bf16:
        sixteen = [p for p in sixteen if p != "bf16"] or ["fp16"]
    return sixteen + ["int8", *FOUR_BIT]


def shown_precisions(layout: Layout) -> list[str]:
    """Every precision, largest first: fp32 (above a 16-bit model's native dtype: shown, never a
    candidate), then `candidate_precisions`."""
    order = candidate_precisions(layout)
    return order if order[0] == "fp32" else ["fp32", *order]


def size_text(value: int | None) -> str:
    if value is None:
        return "?"
    if abs(value) >= GiB:
        return f"{value / GiB:.2f} GiB"
    return f"{value / MiB:.1f} MiB"
