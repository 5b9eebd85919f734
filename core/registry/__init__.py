"""The model registry and phase 6's items: shipped versions, their aliases and history, the
manifest, SHA256SUMS and its verification, the serving commands, and `checks.py`, which decides
phase 6's items for the version under release. Torch-free; below the gates, so the gates can
decide phase 6 and the release (ship, promote, audit) above them can ask the gates.
"""
