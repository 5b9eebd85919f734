"""Phase 3, memory & precision: what fits, estimated from metadata and then measured. Model
layouts and estimates (bitsandbytes overheads, KV cache, activations, LoRA / QLoRA), devices
(NVML, host memory), loading a model at a precision, measuring a load against the estimate.
`checks.py` decides phase 3's items.
"""
