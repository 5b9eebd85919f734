"""weightgate: six gated phases from "which model?" to a checksummed, evaluated release.

One import namespace over the repository's four folders (pyproject.toml maps them):

    weightgate.core      core/     the headless engine, one package per phase; never imports the UI
    weightgate.tui       tui/      the Textual app, the `weightgate` command, shared widgets
    weightgate.screens   screens/  one screen per phase, with its own panels
    weightgate.themes    themes/   stylesheets and colour themes

This file only names the version: importing it must stay instant.
"""

__version__ = "0.1.0"
