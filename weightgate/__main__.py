"""`python -m weightgate`: the same as the `weightgate` command (no arguments: the TUI)."""

from weightgate.tui.cli import main

if __name__ == "__main__":
    main()
