"""weightgate: six gated phases from "which model?" to a checksummed, evaluated release.

One import namespace over the repository's four folders (pyproject.toml maps them):

    weightgate.core      core/     the headless engine, one package per phase; never imports the UI
    weightgate.tui       tui/      the Textual app, the `weightgate` command, shared widgets
    weightgate.screens   screens/  one screen per phase, with its own panels
    weightgate.themes    themes/   stylesheets and colour themes

This file names the version and one security default; importing it must stay instant.
"""

import os

__version__ = "0.1.0"

# transformers 5 kernelizes every from_pretrained with kernels fetched from the Hugging Face hub
# unless USE_HUB_KERNELS says no: code from the internet, at no pinned commit, without consent.
# Off in weightgate's processes and every process they start (jobs, probes, `transformers
# serve`); a user who wants hub kernels sets USE_HUB_KERNELS=YES explicitly.
os.environ.setdefault("USE_HUB_KERNELS", "NO")
