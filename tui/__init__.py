"""weightgate's terminal UI (Textual). The engine lives in `core/` and never imports this.

`tui.app.run_tui(path)` starts the workbench; `tui.cli` (typer) is the console script.
Thread workers do all file and device I/O and post the Messages in `tui.messages`.
"""
