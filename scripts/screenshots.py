"""Save an SVG of every screen of the TUI on a workspace, as the app itself renders it
(Textual's `App.save_screenshot`, the same as the command palette's "Screenshot"):

    .venv/bin/python scripts/screenshots.py demo-workspace docs/screens

The README's walkthrough shows these (taken on the workspace `weightgate demo --headless` leaves).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCREENS = [("overview", "o"), ("selection", "1"), ("verification", "2"), ("memory", "3"), ("evaluation", "4"),
           ("finetuning", "5"), ("deployment", "6"), ("jobs", "j"), ("compare", "C")]


async def shoot(workspace: Path, out: Path, size: tuple[int, int], settle: float) -> list[Path]:
    from weightgate.tui.app import WeightgateApp

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    app = WeightgateApp(workspace)
    async with app.run_test(size=size) as pilot:
        for _ in range(200):
            if app.report is not None or app.workspace_error is not None:
                break
            await pilot.pause(0.05)
        for name, key in SCREENS:
            await pilot.press(key)
            await pilot.pause(settle)
            path = out / f"{name}.svg"
            app.save_screenshot(filename=path.name, path=str(out))
            saved.append(path)
            print(path)
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspace", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", default="120x40", help="columns x rows (default 120x40)")
    parser.add_argument("--settle", type=float, default=2.5, help="seconds to let a screen read its data")
    args = parser.parse_args(argv)
    cols, rows = (int(part) for part in args.size.lower().split("x"))
    asyncio.run(shoot(args.workspace.resolve(), args.out.resolve(), (cols, rows), args.settle))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
