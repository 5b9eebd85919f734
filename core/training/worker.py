"""What each torchrun worker runs for `weightgate train start --nproc N`:

    python -m torch.distributed.run --standalone --nproc-per-node N \
        -m weightgate.core.training.worker <workspace> <run-dir> <job-dir> <resume: 0|1> <throttle seconds>

Every rank builds the same model (same seed), takes every N-th example of each optimizer
step and joins the gradient all-reduce; rank 0 alone writes the journal, checkpoints, the best
adapter and evidence. SIGTERM (from `weightgate cancel`, or torchrun forwarding it) is honoured
at the next step boundary on every rank at once.

The device is run.json's (core.training.session.train_device): for a CUDA run each worker
binds cuda:<LOCAL_RANK> (torch.cuda.set_device, before the process group) and the group is
nccl; for a CPU run the workers share the cores and the group is gloo.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from weightgate.core.engine.events import JournalWriter
from weightgate.core.engine.jobs import events_path
from weightgate.core.training.runs import read_run
from weightgate.core.training.session import execute, rank_device


def main(argv: list[str]) -> int:
    import torch  # lazy: torch only where it runs, never at import
    import torch.distributed as dist  # lazy: torch only where it runs, never at import

    ws_root, run_dir, job_dir, resume, throttle_s = argv
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))   # N workers share the cores
    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.update(requested=True))
    device, backend = rank_device(read_run(Path(run_dir)).get("device", "cpu"), local_rank)
    if backend == "nccl":
        # Bind this rank to its GPU first: nccl's communicator, the model, the all-reduced
        # tensors and torch.cuda.max_memory_allocated are all this device's.
        torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend, device_id=torch.device(device))
    else:
        dist.init_process_group(backend)
    try:
        journal = JournalWriter(events_path(job_dir)) if rank == 0 else None
        emit = (lambda kind, payload: journal.emit(kind, payload)) if journal else (lambda kind, payload: None)
        outcome = execute(Path(ws_root), Path(run_dir), rank=rank, world=world, resume=resume == "1", emit=emit,
                          should_stop=lambda: stop["requested"], throttle_s=float(throttle_s), device=device)
        print(f"rank {rank}: {outcome.status} at step {outcome.step}", file=sys.stderr)
        # The launcher reads these to tell a finished rank that gloo aborts at exit
        # ("terminate called without an active exception") from a failed one.
        finished_marker(Path(job_dir), rank).write_text(f"{outcome.status} {outcome.step}\n")
        dist.barrier()   # no rank tears its communicator down while another still talks
    finally:
        dist.destroy_process_group()
    return 0


def finished_marker(job_dir: Path, rank: int) -> Path:
    return job_dir / f"rank-{rank}.finished"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
