"""A training run's history folded from its job journal, and a loss chart drawn in braille.

`TrainingHistory.add(events)` takes the `train` job's events in journal order (the first call
replays the whole history, later calls what was appended): per-step metrics (loss, lr, grad
norm, tokens/s, memory, ETA), validation losses, checkpoints (the best one marked), logs and
the result. A step seen twice (a run killed and resumed re-runs the steps after its last
checkpoint) keeps its latest value. Pure Python: unit-tested without a terminal.

`render_loss_chart` plots train loss as a braille line, 2 x 4 dots per cell (smoothed by default:
the exponential moving average TensorBoard uses, with the raw loss faint behind it), validation
loss as diamonds, and optionally a second run's loss overlaid in its own colour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from textual.content import Content

TRAIN_STYLE = "#4e79a7"
VAL_STYLE = "bold #f28e2b"
BEST_STYLE = "bold #59a14f"
OVERLAY_STYLE = "#b07aa1"
RAW_STYLE = "dim $text-muted"   # the raw per-step loss, faint behind the smoothed line
SMOOTHING = 0.8
# Braille dot bits by [row][column] inside one cell (Unicode's 2 x 4 layout).
DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


@dataclass
class TrainingHistory:
    train: dict[int, float] = field(default_factory=dict)        # step -> train loss
    val: dict[int, float] = field(default_factory=dict)          # step -> validation loss
    latest: dict[str, Any] = field(default_factory=dict)         # the last per-step metrics
    checkpoints: dict[int, dict] = field(default_factory=dict)   # step -> {val_loss, is_best, path}
    done: int = 0
    total: int | None = None
    eta_s: float | None = None
    logs: list[tuple[str, str]] = field(default_factory=list)    # (level, message), newest last
    result: dict | None = None
    error: str | None = None

    def add(self, events: Iterable[Any]) -> None:
        for event in events:
            payload = event.payload or {}
            if event.kind == "metric":
                values = payload.get("values") or {}
                step = values.get("step", payload.get("step"))
                if step is None:
                    continue
                if values.get("loss") is not None:
                    self.train[int(step)] = float(values["loss"])
                    self.latest = dict(values)
                if values.get("val_loss") is not None:
                    self.val[int(step)] = float(values["val_loss"])
            elif event.kind == "artifact" and payload.get("label") == "checkpoint" and payload.get("step") is not None:
                entry = self.checkpoints.setdefault(int(payload["step"]), {})
                entry.update({k: payload[k] for k in ("val_loss", "is_best", "path", "reason") if k in payload})
            elif event.kind == "progress":
                self.done = int(payload.get("done") or 0)
                self.total = payload.get("total")
                self.eta_s = payload.get("eta_s")
            elif event.kind == "log":
                self.logs.append((str(payload.get("level", "info")), str(payload.get("message", ""))))
                del self.logs[:-50]
            elif event.kind == "result":
                self.result = payload.get("data") if isinstance(payload.get("data"), dict) else {}
            elif event.kind == "error":
                self.error = str(payload.get("message") or payload)

    @property
    def best_step(self) -> int | None:
        if not self.val:
            return None
        return min(self.val, key=lambda step: (self.val[step], step))

    def checkpoint_rows(self) -> list[tuple[int, float | None, bool]]:
        """(step, val loss, is best) for every checkpoint, newest first; best = the lowest val loss."""
        best = self.best_step
        rows = []
        for step in sorted(self.checkpoints, reverse=True):
            val = self.checkpoints[step].get("val_loss", self.val.get(step))
            rows.append((step, val, step == best))
        return rows


def smoothed(points: list[tuple[int, float]], weight: float = SMOOTHING) -> list[tuple[int, float]]:
    """TensorBoard's debiased exponential moving average."""
    out, last, n = [], 0.0, 0
    for step, value in points:
        n += 1
        last = last * weight + (1 - weight) * value
        out.append((step, last / (1 - weight ** n)))
    return out


def _label(value: float) -> str:
    return f"{value:7.3f}" if abs(value) < 1000 else f"{value:7.1e}"


def value_range(values: list[float]) -> tuple[float, float]:
    """The y axis: the values with 5 % room, never below 0 when no loss is negative (a loss
    axis running to -0.1 suggests a loss that cannot happen)."""
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.05 or max(abs(hi) * 0.05, 1e-3)
    floor = lo - pad
    return (max(0.0, floor) if lo >= 0 else floor), hi + pad


def render_loss_chart(history: TrainingHistory, width: int = 60, height: int = 10, *,
                      smooth: bool = True, overlay: TrainingHistory | None = None,
                      overlay_label: str = "other run") -> Content:
    """Train loss (braille line) and validation loss (diamonds) against the step.

    smooth: the moving average in colour with the raw per-step loss faint behind it (raw only
    when off). overlay: a second run's train loss (smoothed the same way) in its own colour,
    on the same axes.
    """
    train = sorted(history.train.items())
    val = sorted(history.val.items())
    if not train and not val:
        return Content.assemble(("no loss yet: the chart fills in as the run reports its steps", "$text-muted"))
    main = smoothed(train) if smooth else train
    other_raw = sorted(overlay.train.items()) if overlay is not None else []
    other = smoothed(other_raw) if smooth else other_raw
    drawn = [*train, *main, *other, *val]
    steps = [s for s, _ in drawn]
    x0, x1 = min(steps), max(steps)
    lo, hi = value_range([v for _, v in drawn])
    plot_w = max(8, width - 9)
    px_w, px_h = plot_w * 2, height * 4

    def pixel(step: float, loss: float) -> tuple[int, int]:
        x = round((step - x0) / (x1 - x0) * (px_w - 1)) if x1 > x0 else px_w // 2
        y = round((hi - loss) / (hi - lo) * (px_h - 1))
        return x, min(max(y, 0), px_h - 1)

    def line(series: list[tuple[int, float]]) -> list[list[int]]:
        """Braille cells of `series` drawn as a line (each step joined to the previous one)."""
        cells = [[0] * plot_w for _ in range(height)]

        def dot(x: int, y: int) -> None:
            cells[y // 4][x // 2] |= DOTS[y % 4][x % 2]

        columns: dict[int, list[int]] = {}
        for step, loss in series:
            x, y = pixel(step, loss)
            columns.setdefault(x, []).append(y)
        previous = None
        for x in sorted(columns):
            y = round(sum(columns[x]) / len(columns[x]))
            if previous is None:
                dot(x, y)
            else:
                (px, py), last_y = previous, previous[1]
                for xi in range(px + 1, x + 1):
                    yi = round(py + (y - py) * (xi - px) / (x - px))
                    for fill in range(min(last_y, yi), max(last_y, yi) + 1):
                        dot(xi, fill)
                    last_y = yi
            previous = (x, y)
        return cells

    # Front to back (a cell shows the first layer with a dot in it): this run, the overlaid run, the raw loss.
    layers = [(line(main), TRAIN_STYLE), (line(other), OVERLAY_STYLE)] if other else [(line(main), TRAIN_STYLE)]
    if smooth and train:
        layers.append((line(train), RAW_STYLE))
    markers: dict[tuple[int, int], str] = {}
    best = history.best_step
    for step, loss in val:
        x, y = pixel(step, loss)
        markers[(y // 4, x // 2)] = BEST_STYLE if step == best else VAL_STYLE

    lines = []
    for row in range(height):
        if row == 0:
            axis = _label(hi)
        elif row == height - 1:
            axis = _label(lo)
        elif row == height // 2:
            axis = _label((hi + lo) / 2)
        else:
            axis = " " * 7
        parts: list[Any] = [(axis + " ┤", "$text-muted")]
        for col in range(plot_w):
            style = markers.get((row, col))
            if style is not None:
                parts.append(("◆", style))
                continue
            for cells, layer_style in layers:
                if cells[row][col]:
                    parts.append((chr(0x2800 + cells[row][col]), layer_style))
                    break
            else:
                parts.append(" ")
        lines.append(Content.assemble(*parts))
    left, right = f"step {x0}", f"{x1}"
    lines.append(Content.assemble((" " * 9 + left + " " * max(1, plot_w - len(left) - len(right)) + right,
                                   "$text-muted")))
    legend = [("⣀ ", TRAIN_STYLE), ("train loss" + (" (smoothed; raw faint)" if smooth else ""), "")]
    if other:
        legend += [("   ⣀ ", OVERLAY_STYLE), (overlay_label, "")]
    legend += [("   ◆ ", VAL_STYLE), ("validation loss", "")]
    if best is not None:
        legend += [("   ◆ ", BEST_STYLE), (f"best: step {best}, {history.val[best]:.4f}", "")]
    lines.append(Content.assemble(" " * 9, *legend))
    return Content("\n").join(lines)
