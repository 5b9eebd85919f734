"""A model's shape as the memory estimate needs it (a `Layout`): its Linear layers by role, the
attention and KV geometry, embeddings, vocabulary and native dtype. Built from the safetensors
headers (every tensor's name and shape: exact) or from config.json (architecture arithmetic,
reconciled with the exact parameter count when the headers gave one).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable

from weightgate.core.weights.metadata import sliding_window_of

DTYPE_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2, "int8": 1, "uint8": 1}
# safetensors dtype names -> torch dtype names
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "BF16": "bfloat16", "F16": "float16", "I8": "int8",
                      "U8": "uint8", "F8_E4M3": "float8", "F8_E5M2": "float8"}
PRECISION_OF_DTYPE = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
ATTENTION_ROLES = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "query_key_value", "c_attn", "dense",
                   "out_proj", "Wqkv", "wq", "wk", "wv", "wo")
MLP_ROLES = ("gate_proj", "up_proj", "down_proj", "gate_up_proj", "fc1", "fc2", "c_fc", "c_proj", "w1", "w2", "w3",
             "dense_h_to_4h", "dense_4h_to_h")


@dataclass
class Linear:
    """Linear layers of one kind: `count` of them, each in_features -> out_features."""
    role: str                  # q_proj, k_proj, ..., the module's own name
    in_features: int
    out_features: int
    count: int = 1
    bias: bool = False

    @property
    def weight_params(self) -> int:
        return self.in_features * self.out_features


@dataclass
class Layout:
    linears: list[Linear]                  # quantizable Linear weights (lm_head excluded)
    embedding_params: int = 0
    lm_head_params: int = 0                # 0 when tied to the embeddings
    other_params: int = 0                  # norms, biases, anything else: never quantized
    buffer_bytes: int = 0                  # rotary inv_freq and the like (fp32)
    num_layers: int = 0
    hidden_size: int = 0
    intermediate_size: int = 0
    num_heads: int = 0
    num_kv_heads: int = 0
    head_dim: int = 0
    vocab_size: int = 0
    sliding_window: int | None = None
    sliding_window_layers: list[int] | None = None
    tied: bool = False
    native_dtype: str = "float32"
    source: str = "config"                 # "headers" (exact) | "config" (arithmetic)
    exact_parameters: int | None = None    # from the safetensors headers, when known
    warnings: list[str] = field(default_factory=list)

    @property
    def linear_params(self) -> int:
        return sum(lin.weight_params * lin.count for lin in self.linears)

    @property
    def bias_params(self) -> int:
        return sum(lin.out_features * lin.count for lin in self.linears if lin.bias)

    @property
    def parameter_count(self) -> int:
        return self.linear_params + self.bias_params + self.embedding_params + self.lm_head_params + self.other_params

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def native_precision(self) -> str:
        return PRECISION_OF_DTYPE.get(self.native_dtype, "fp32")

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(parameter_count=self.parameter_count, linear_params=self.linear_params)
        return data


def _int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _get(config: dict, *keys: str, default=None):
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return default


def text_config(config: dict) -> dict:
    """The language model's config (a multimodal model keeps it under text_config)."""
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    return {**config, **{k: v for k, v in text.items() if v is not None}}


def _native_dtype(config: dict) -> str:
    dtype = str(_get(config, "dtype", "torch_dtype", default="float32")).replace("torch.", "")
    return dtype if dtype in PRECISION_OF_DTYPE else "float32"


def _attention_shape(config: dict) -> tuple[int, int, int, int]:
    h = _int(_get(config, "hidden_size", "n_embd", "d_model", "dim")) or 0
    heads = _int(_get(config, "num_attention_heads", "n_head", "num_heads", "n_heads")) or 1
    kv = _get(config, "num_key_value_heads", "num_kv_heads", "n_kv_heads", "multi_query_group_num")
    if kv is None and config.get("multi_query") is True:
        kv = 1
    kv_heads = _int(kv) or heads
    head_dim = _int(config.get("head_dim")) or (h // heads if heads else 0)
    return h, heads, kv_heads, head_dim


def _windows(config: dict, layers: int) -> tuple[int | None, list[int] | None]:
    return sliding_window_of(config, layers)


def layout_from_config(config: dict, exact_parameters: int | None = None) -> Layout:
    """The layout of a decoder-only transformer from its config.json (Llama family and its
    relatives: Mistral, Qwen2/3, Gemma 1/2/3, Phi-3, Mixtral-style MoE). `exact_parameters`
    (from the safetensors headers) reconciles the count: a difference goes to `other_params`
    (kept unquantized: the conservative side) with a warning."""
    cfg = text_config(config)
    model_type = str(cfg.get("model_type") or "")
    h, heads, kv_heads, head_dim = _attention_shape(cfg)
    layers = _int(_get(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers")) or 0
    vocab = _int(_get(cfg, "vocab_size", "padded_vocab_size")) or 0
    inter = _int(_get(cfg, "intermediate_size", "n_inner", "ffn_dim")) or 4 * h
    tied = bool(cfg.get("tie_word_embeddings", config.get("tie_word_embeddings", False)))
    qkv_bias = bool(cfg.get("attention_bias")) or model_type in ("qwen2", "qwen2_moe", "qwen2_vl")
    mlp_bias = bool(cfg.get("mlp_bias"))
    q_out, kv_out = heads * head_dim, kv_heads * head_dim
    linears: list[Linear] = []
    if model_type in ("phi3", "phimoe"):
        linears.append(Linear("qkv_proj", h, q_out + 2 * kv_out, layers, qkv_bias))
    else:
        linears += [Linear("q_proj", h, q_out, layers, qkv_bias), Linear("k_proj", h, kv_out, layers, qkv_bias),
                    Linear("v_proj", h, kv_out, layers, qkv_bias)]
    linears.append(Linear("o_proj", q_out, h, layers, bool(cfg.get("attention_bias")) and model_type != "qwen2"))
    experts = _int(_get(cfg, "num_local_experts", "num_experts", "n_routed_experts")) or 0
    warnings: list[str] = []
    if experts > 1:
        moe_inter = _int(_get(cfg, "moe_intermediate_size")) or inter
        linears += [Linear("gate_proj", h, moe_inter, layers * experts), Linear("up_proj", h, moe_inter, layers * experts),
                    Linear("down_proj", moe_inter, h, layers * experts), Linear("router", h, experts, layers)]
        shared = _int(cfg.get("shared_expert_intermediate_size")) or 0
        if shared:
            linears += [Linear("gate_proj", h, shared, layers), Linear("up_proj", h, shared, layers),
                        Linear("down_proj", shared, h, layers)]
        warnings.append(f"mixture of experts ({experts} experts): every expert is counted as resident and "
                        "quantizable; activations use one expert's width")
        inter = moe_inter
    elif model_type in ("phi3",):
        linears += [Linear("gate_up_proj", h, 2 * inter, layers, mlp_bias), Linear("down_proj", inter, h, layers, mlp_bias)]
    else:
        linears += [Linear("gate_proj", h, inter, layers, mlp_bias), Linear("up_proj", h, inter, layers, mlp_bias),
                    Linear("down_proj", inter, h, layers, mlp_bias)]
    norms_per_layer = 4 if model_type.startswith(("gemma2", "gemma3")) else 2
    norms = layers * norms_per_layer * h + h
    if model_type.startswith(("qwen3", "gemma3", "olmo2")):
        norms += layers * 2 * (head_dim if not model_type.startswith("olmo2") else h)
    window, window_layers = _windows(cfg, layers)
    layout = Layout(linears=linears, embedding_params=vocab * h, lm_head_params=0 if tied else vocab * h,
                    other_params=norms, buffer_bytes=4 * head_dim, num_layers=layers, hidden_size=h,
                    intermediate_size=inter, num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
                    vocab_size=vocab, sliding_window=window, sliding_window_layers=window_layers, tied=tied,
                    native_dtype=_native_dtype(config), source="config", exact_parameters=exact_parameters,
                    warnings=warnings)
    if exact_parameters:
        _reconcile(layout, exact_parameters)
    return layout


def _reconcile(layout: Layout, exact: int) -> None:
    diff = exact - layout.parameter_count
    if diff == 0:
        return
    share = abs(diff) / exact
    if diff > 0:
        layout.other_params += diff
    else:
        layout.other_params = max(0, layout.other_params + diff)
    if share > 0.005:
        layout.warnings.append(f"the config's architecture arithmetic differs from the weight files by {diff:+,} "
                               f"parameters ({share:.1%}); the difference is counted as unquantized")


def layout_from_tensors(tensors: Iterable[tuple[str, tuple[int, ...], str]], config: dict) -> Layout:
    """The exact layout from every tensor's (name, shape, safetensors dtype): 2-D `.weight`
    tensors are Linear layers unless they are embeddings or the output head."""
    cfg = text_config(config)
    base = layout_from_config(config)          # attention shape, windows, sizes for activations
    linears: dict[tuple[str, int, int], int] = {}
    embedding = lm_head = other = 0
    dtype_counts: dict[str, int] = {}
    entries = list(tensors)
    names = {name for name, _, _ in entries}
    for name, shape, dtype in entries:
        numel = math.prod(shape) if shape else 1
        dtype_counts[dtype] = dtype_counts.get(dtype, 0) + numel
        parts = name.split(".")
        module = parts[-2] if len(parts) >= 2 else name
        if len(shape) == 2 and name.endswith(".weight"):
            if "embed" in module or module in ("wte", "wpe", "word_embeddings", "tok_embeddings", "embeddings"):
                embedding += numel
                continue
            if module in ("lm_head", "output", "embed_out") and len(parts) <= 3:
                lm_head += numel
                continue
            key = (module, shape[1], shape[0])
            linears[key] = linears.get(key, 0) + 1
            continue
        other += numel                         # norms, biases, anything else: never quantized
    found = [Linear(role, fan_in, fan_out, count) for (role, fan_in, fan_out), count in linears.items()]
    tied = bool(cfg.get("tie_word_embeddings", False))
    if tied:
        lm_head = 0                            # transformers ties it to the embeddings
    native = max(dtype_counts, key=dtype_counts.get) if dtype_counts else "F32"
    layout = Layout(linears=found, embedding_params=embedding, lm_head_params=lm_head, other_params=other,
                    buffer_bytes=base.buffer_bytes, num_layers=base.num_layers, hidden_size=base.hidden_size,
                    intermediate_size=base.intermediate_size, num_heads=base.num_heads,
                    num_kv_heads=base.num_kv_heads, head_dim=base.head_dim, vocab_size=base.vocab_size,
                    sliding_window=base.sliding_window, sliding_window_layers=base.sliding_window_layers,
                    tied=tied or not lm_head, native_dtype=SAFETENSORS_DTYPES.get(native, "float32"),
                    source="headers", exact_parameters=sum(dtype_counts.values()),
                    warnings=[w for w in base.warnings if "mixture" in w])
    if tied and any(name.startswith("lm_head") for name in names):
        layout.warnings.append("lm_head.weight is in the files but tie_word_embeddings is set: counted once")
    return layout
