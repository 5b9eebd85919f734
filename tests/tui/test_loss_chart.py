"""The training history folded from journal events, and the braille loss chart."""

from __future__ import annotations

from weightgate.core.engine.events import Event
from weightgate.screens.finetuning.loss_chart import (
    OVERLAY_STYLE,
    RAW_STYLE,
    TRAIN_STYLE,
    TrainingHistory,
    render_loss_chart,
    smoothed,
)


def event(kind: str, payload: dict, seq: int = 0) -> Event:
    return Event(seq=seq, time=0.0, kind=kind, payload=payload)


def step(n: int, loss: float) -> Event:
    return event("metric", {"step": n, "values": {"step": n, "loss": loss, "lr": 1e-4, "tokens_per_s": 900.0}})


def val(n: int, loss: float, best: bool) -> list[Event]:
    return [event("metric", {"step": n, "values": {"step": n, "val_loss": loss}}),
            event("artifact", {"path": f"/ckpt/{n}", "label": "checkpoint", "step": n, "val_loss": loss,
                               "is_best": best})]


def test_history_keeps_the_latest_value_of_a_re_run_step_and_the_best_checkpoint():
    history = TrainingHistory()
    history.add([step(1, 3.0), step(2, 2.5), *val(2, 2.6, True), step(3, 2.4)])
    # killed after step 3, resumed from the step-2 checkpoint: step 3 runs again
    history.add([event("log", {"message": "resumed from checkpoint-2", "level": "info"}), step(3, 2.35),
                 step(4, 2.1), *val(4, 2.7, False), event("progress", {"done": 4, "total": 4, "eta_s": 0})])
    assert history.train == {1: 3.0, 2: 2.5, 3: 2.35, 4: 2.1}
    assert history.best_step == 2
    assert history.checkpoint_rows() == [(4, 2.7, False), (2, 2.6, True)]
    assert history.latest["tokens_per_s"] == 900.0 and (history.done, history.total) == (4, 4)
    assert history.logs[-1] == ("info", "resumed from checkpoint-2")


def test_smoothing_is_debiased_and_follows_a_constant():
    assert [round(v, 9) for _, v in smoothed([(1, 2.0), (2, 2.0), (3, 2.0)])] == [2.0, 2.0, 2.0]
    ema = smoothed([(1, 4.0), (2, 0.0)], 0.5)
    assert ema[0][1] == 4.0 and abs(ema[1][1] - 4 / 3) < 1e-12


def test_chart_draws_train_line_val_diamonds_and_axis():
    history = TrainingHistory()
    history.add([step(n, 3.0 - n * 0.1) for n in range(1, 21)] + val(10, 2.2, True) + val(20, 2.5, False))
    text = render_loss_chart(history, width=50, height=6).plain
    lines = text.splitlines()
    assert len(lines) == 8                                  # 6 plot rows, the x axis, the legend
    assert float(lines[0].split("┤")[0]) > 2.9 and float(lines[5].split("┤")[0]) < 1.0 + 0.1
    assert sum(line.count("◆") for line in lines[:6]) == 2
    assert any(0x2800 < ord(ch) <= 0x28FF for ch in text)   # braille dots for the train loss
    assert "step 1" in lines[6] and lines[6].rstrip().endswith("20")
    assert "best: step 10, 2.2000" in lines[7]
    # the top-left dot is the highest loss (step 1), the last column the lowest
    assert render_loss_chart(history, 50, 6, smooth=False).plain != text   # smoothing is the default
    assert "no loss yet" in render_loss_chart(TrainingHistory()).plain


def test_the_loss_axis_stops_at_zero_when_no_loss_is_negative():
    history = TrainingHistory()
    history.add([step(n, 0.4 / n) for n in range(1, 31)])
    lines = render_loss_chart(history, width=50, height=6).plain.splitlines()
    assert float(lines[5].split("┤")[0]) == 0.0                  # not -0.019: a loss cannot be negative
    negative = TrainingHistory()
    negative.add([step(n, 0.5 - n * 0.1) for n in range(1, 11)])  # a reward-like signal may go below zero
    assert float(render_loss_chart(negative, 50, 6).plain.splitlines()[5].split("┤")[0]) < -0.5


def test_smoothing_shows_the_raw_loss_faint_behind_and_a_second_run_overlays():
    history = TrainingHistory()
    history.add([step(n, 2.0 + (0.5 if n % 2 else -0.5) - n * 0.02) for n in range(1, 41)])   # a noisy loss
    styles = {str(span.style) for span in render_loss_chart(history, 60, 8).spans}
    assert RAW_STYLE in styles and TRAIN_STYLE in styles             # the average over the faint raw loss
    assert RAW_STYLE not in {str(span.style) for span in render_loss_chart(history, 60, 8, smooth=False).spans}
    other = TrainingHistory()
    other.add([step(n, 3.0 - n * 0.05) for n in range(1, 41)])
    chart = render_loss_chart(history, 60, 8, overlay=other, overlay_label="run 20261207-ab12")
    assert OVERLAY_STYLE in {str(span.style) for span in chart.spans}
    assert "run 20261207-ab12" in chart.plain.splitlines()[-1]
    assert float(chart.plain.splitlines()[0].split("┤")[0]) > 2.9    # the axes take both runs
