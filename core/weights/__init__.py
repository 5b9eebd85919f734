"""Phase 2, verification: which bytes, and are they the published ones. Sources (hub, local
directory, GGUF) and their metadata without downloading weights, the verified download into
the Hugging Face cache, verify against weightgate.lock, safetensors / GGUF header formats,
pickle scanning and the trust policy, licences. `checks.py` decides phase 2's items.
"""
