"""The headless demo's timing table: a phase's seconds generating, training, hashing and loading
come from its jobs' own `timing` results and this process's timers, not from guesses."""

from helpers import tiny_workspace

from weightgate.core.demo.timing import job_ids, phase_timing, timing_table
from weightgate.core.engine import timers
from weightgate.core.engine.hashing import sha256_file
from weightgate.core.engine.jobs import follow_job, start_job


def test_phase_timing_adds_the_jobs_and_this_process(tmp_path, tiny_model_dir):
    import time

    ws = tiny_workspace(tmp_path / "ws", tiny_model_dir)
    before_jobs, before_timers, began = job_ids(ws), timers.totals(), time.perf_counter()
    handle = start_job(ws.jobs_dir, "eval", {"batch_size": 8}, workspace=ws.root)
    events = list(follow_job(handle.job_dir, poll_s=0.05))
    in_job = events[-1].payload["data"]["timing"]
    sha256_file(tiny_model_dir / "model.safetensors")   # hashing in this process
    wall = time.perf_counter() - began
    timing = phase_timing(ws, before_jobs, timers.since(before_timers), wall)
    assert timing["jobs"] == 1 and timing["wall_s"] == round(wall, 1)
    assert timing["generating_s"] == round(in_job["generating_s"], 6) and timing["generating_s"] > 0
    assert timing["loading_s"] == round(in_job["loading_s"], 6)
    assert timing["hashing_s"] >= round(in_job["hashing_s"], 6) and timing["training_s"] == 0
    shares = [timing[f"{c}_pct"] for c in timers.CATEGORIES]
    assert 0 < sum(shares) <= 100
    assert abs(timing["generating_pct"] - 100 * in_job["generating_s"] / wall) < 0.2
    # Jobs from before the phase do not count in it.
    assert phase_timing(ws, job_ids(ws), {}, 1.0)["jobs"] == 0
    table = timing_table([(4, "Evaluation", timing)])
    assert table.splitlines()[0].split()[:6] == ["phase", "wall", "generating", "training", "hashing", "loading"]
    assert table.splitlines()[2].startswith("4 Evaluation") and f"{timing['wall_s']:.1f} s" in table
