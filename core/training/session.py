"""A training run from the workspace to the outcome: prepare (resolve everything into run.json,
record tune.lora_config and tune.effective_batch) and execute (load, train, checkpoint), the
latter in the job process or in each torchrun worker.

The device is decided once, when the run is prepared, and recorded in run.json (a resumed run
continues where it started): `auto` (the default) is core.memory.loading.default_device(), a GPU
when torch sees one; `cpu`; `cuda` (GPU 0, or with --nproc N one GPU per process: each torchrun
worker takes cuda:<LOCAL_RANK> and the process group uses nccl); `cuda:N` (one process on GPU
N). On the CPU the workers use gloo.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from weightgate.core.engine.checklist import TRAINING_RUN_INPUTS
from weightgate.core.engine.digest import digest_file
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import Fingerprints, plain
from weightgate.core.engine.jobs import read_status
from weightgate.core.engine.training_config import TrainConfig, workspace_training_config
from weightgate.core.engine.workspace import open_workspace
from weightgate.core.memory.capability import capability_for, record_compute_decision
from weightgate.core.memory.estimate import TrainingSetup, canonical_precision, estimate
from weightgate.core.memory.layout import ATTENTION_ROLES, MLP_ROLES
from weightgate.core.memory.loading import default_device, flushed_subnormals, subnormals_flush_everywhere
from weightgate.core.memory.precision import (
    layout_for,
    resolve_budget,
    resolve_device,
    tokenizer_bytes,
    workspace_metadata,
    workspace_targets,
)
from weightgate.core.training import runs as runs_mod
from weightgate.core.training.batches import load_examples, read_records
from weightgate.core.training.checkpoint import latest_checkpoint, recover_best
from weightgate.core.training.checks import record_best, record_effective_batch, record_lora_config, record_restore
from weightgate.core.training.dataset import prepare_dataset
from weightgate.core.training.loop import LoopSetup, fork_devices, run_loop
from weightgate.core.training.model import add_lora, detect_targets, load_base, method_for, trainable_parameters
from weightgate.core.training.plan import plan_batches, total_steps, warmup_steps
from weightgate.core.training.precision_plan import build_optimizer, make_scaler, training_precision_plan
from weightgate.core.training.preference.run import dpo_identity, longest_pair, pair_count, preference_run_params
from weightgate.core.weights.verify import verified_snapshot

FINGERPRINTS = TRAINING_RUN_INPUTS
DEVICE_CHOICES = "auto (a GPU when torch sees one), cpu, cuda, or cuda:N"


def check_device_spec(device: str | None) -> str:
    """The normalized device request (auto, cpu, cuda, cuda:N); torch-free, for the CLI."""
    spec = (device or "auto").strip().lower()
    if spec == "gpu":
        spec = "cuda"
    if spec in ("auto", "cpu", "cuda") or (spec.startswith("cuda:") and spec[5:].isdigit()):
        return spec
    raise InputError(f"unknown device {device!r}", hint=f"--device is one of: {DEVICE_CHOICES}")


def train_device(requested: str | None, nproc: int, *, default: str, device_count: int) -> str:
    """The device a run trains on, as run.json records it: "cpu", "cuda:N" (one process), or
    "cuda" for N torchrun processes (each takes cuda:<LOCAL_RANK>, see rank_device).

    `default` is what auto means here (core.memory.loading.default_device(): "cuda" when
    torch.cuda.is_available()); `device_count` is torch.cuda.device_count(). Pure, so the rules
    are tested without a GPU."""
    spec = check_device_spec(requested)
    if spec == "auto":
        spec = "cuda" if default == "cuda" and device_count > 0 else "cpu"
    if spec == "cpu":
        return "cpu"
    if default != "cuda" or device_count < 1:
        raise InputError(f"device {spec}: torch sees no CUDA device on this machine",
                         hint="train on the CPU (--device cpu or auto), or check the NVIDIA driver, the CUDA "
                              "build of torch and CUDA_VISIBLE_DEVICES")
    if spec == "cuda":
        if nproc > device_count:
            raise InputError(f"--nproc {nproc} on CUDA runs one process per GPU, but torch sees {device_count} "
                             f"GPU{'s' if device_count != 1 else ''}",
                             hint=f"use --nproc {device_count} or fewer (or --device cpu for gloo processes)")
        return "cuda" if nproc > 1 else "cuda:0"
    index = int(spec[5:])
    if nproc > 1:
        raise InputError(f"device {spec} names one GPU, but --nproc {nproc} runs one process per GPU "
                         f"(cuda:0 .. cuda:{nproc - 1})", hint="use --device cuda (or auto) with --nproc")
    if index >= device_count:
        raise InputError(f"device {spec}: torch sees {device_count} GPU{'s' if device_count != 1 else ''} "
                         f"(cuda:0 .. cuda:{device_count - 1})", hint="pick one of them, or --device cuda")
    return spec


def rank_device(run_device: str, local_rank: int) -> tuple[str, str]:
    """(this torchrun worker's device, the process-group backend) for a run on `run_device`:
    cuda:<LOCAL_RANK> and nccl on GPUs, the CPU and gloo otherwise."""
    if str(run_device).startswith("cuda"):
        return f"cuda:{local_rank}", "nccl"
    return "cpu", "gloo"


def decided_precision(ws, layout) -> str:
    decided = (plain(ws.config()).get("decisions") or {}).get("precision")
    native = layout.native_precision
    return canonical_precision(decided, native) if decided else native


def auto_targets(layout, wanted) -> list[str]:
    """Target roles from the layout (module names, as core.memory.estimate reads them): no torch needed."""

    roles = sorted({lin.role for lin in layout.linears})
    if wanted == "auto":
        found = [r for r in roles if r in ATTENTION_ROLES or r in MLP_ROLES]
        if not found:
            raise InputError("found no attention or MLP projections to put LoRA on",
                             hint=f"set [training] target_modules to some of: {', '.join(roles)}")
        return found
    return list(wanted)


def longest_example(paths: list[Path], tokenizer_dir: Path, max_seq: int | None) -> int:
    from transformers import AutoTokenizer  # lazy: transformers only where it runs, never at import


    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return max(e.length for path in paths for e in load_examples(path, tokenizer, max_seq=max_seq))


def prepare_run(ws, params: dict, *, job_id: str | None = None) -> Path:
    """Resolve a new run into .weightgate/adapters/<run_id>/run.json and record the config evidence."""

    cfg: TrainConfig = workspace_training_config(ws, params.get("overrides"))
    for key in ("train_file", "val_file"):
        if not params.get(key):
            raise InputError(f"the train job needs {key}", hint="`weightgate train start` prepares the data split first")
    train_file, val_file = Path(params["train_file"]), Path(params["val_file"])
    nproc = int(params.get("nproc") or 1)
    model_dir = verified_snapshot(ws)
    meta = workspace_metadata(ws)
    layout = layout_for(meta)
    precision = decided_precision(ws, layout)
    method = method_for(precision)
    targets = auto_targets(layout, cfg.target_modules)
    limit = int(cfg.max_seq) if cfg.max_seq != "auto" else meta.context_length
    preference = cfg.method == "dpo"
    if preference:
        seq, n_train = longest_pair([train_file, val_file], model_dir), pair_count(train_file)
    else:
        seq = longest_example([train_file, val_file], model_dir, limit)
        n_train = len(read_records(train_file))
    requested = check_device_spec(params.get("device"))
    device = resolve_train_device(requested, nproc)
    where, snap = resolve_device(device)
    targets_cfg = workspace_targets(plain(ws.config()), config_path=ws.config_path)
    budget = resolve_budget(where, snap, budget_gib=targets_cfg["budget_gib"], device_spec=device)
    capability = capability_for(device)
    compute = training_precision_plan(precision, model_dir, device, cfg.to_dict(), capability)
    estimates: dict[int, Any] = {}

    def estimate_at(micro: int):
        # DPO puts chosen and rejected through the model in one batch: twice the sequences.
        setup = TrainingSetup(method=method, r=cfg.r, targets=targets, batch=micro * (2 if preference else 1), seq=seq,
                              gradient_checkpointing=cfg.gradient_checkpointing, dropout=cfg.dropout,
                              optimizer=compute["optimizer"], attn_implementation=compute["attn_implementation"])
        estimates[micro] = estimate(layout, precision, training=setup, device=where, budget=budget.bytes,
                                    headroom=targets_cfg["headroom"], tokenizer_bytes=tokenizer_bytes(meta),
                                    capability=capability)
        return estimates[micro]

    batch = plan_batches(effective_batch=cfg.effective_batch, processes=nproc, micro_batch=cfg.micro_batch,
                         estimate_at=estimate_at, budget_bytes=budget.bytes, budget_source=budget.source, seq=seq,
                         method=method, budget_detail=budget.detail)
    chosen = estimates[batch.micro_batch].details
    compute["estimate"] = {key: chosen[key] for key in ("compute_dtype", "amp", "autocast_cache_bytes", "optimizer",
                                                        "attn_implementation")}
    compute["estimate"]["optimizer_bytes"] = estimates[batch.micro_batch].breakdown["optimizer"]
    steps = total_steps(n_train, cfg.effective_batch, cfg.epochs, params.get("steps"))
    run_id = params.get("run_id") or runs_mod.new_run_id()
    directory = runs_mod.run_dir(ws, run_id)
    directory.mkdir(parents=True, exist_ok=False)
    prints = Fingerprints(ws).of(FINGERPRINTS)
    spec = {"run_id": run_id, "created": time.time(), "status": "prepared", "job_ids": [job_id] if job_id else [],
            "config": cfg.to_dict(), "targets": targets, "precision": precision, "method": method,
            "model_dir": str(model_dir), "train_file": str(train_file), "val_file": str(val_file),
            "dataset_digest": params.get("dataset_digest"), "data_files": _data_digests(train_file, val_file),
            "max_seq": seq, "batch": batch.to_dict(), "precision_plan": compute,
            "train_examples": n_train, "total_steps": steps, "warmup_steps": warmup_steps(steps, cfg.warmup_ratio),
            "max_steps": params.get("steps"), "nproc": nproc, "device": device, "device_requested": requested,
            "fingerprints": prints, "objective": cfg.method}
    if preference:
        spec["dpo"] = dpo_identity(cfg)
    if nproc > 1:
        spec["backend"] = rank_device(device, 0)[1]
        spec["rank_devices"] = [rank_device(device, rank)[0] for rank in range(nproc)] if where == "cuda" \
            else ["cpu"] * nproc
    runs_mod.write_run(directory, spec)
    if where == "cuda":
        record_compute_decision(ws, capability)   # [decisions] compute_dtype and its reason
    record_lora_config(ws, run_id, cfg.to_dict(), targets, method, precision)
    record_effective_batch(ws, run_id, batch.to_dict())
    if batch.fits is False:
        runs_mod.update_run(directory, status="failed", outcome={"status": "failed", "message": "does not fit"})
        batch.require_fit()
    return directory


def resolve_train_device(requested: str, nproc: int) -> str:
    """train_device with this process's torch (the job process; the CLI when cuda is asked for)."""
    import torch  # lazy: torch only where it runs, never at import


    return train_device(requested, nproc, default=default_device(),
                        device_count=torch.cuda.device_count() if torch.cuda.is_available() else 0)


def _data_digests(train_file: Path, val_file: Path) -> dict:
    return {"train": digest_file(train_file), "val": digest_file(val_file)}


def check_resumable(ws, directory: Path) -> dict:
    """run.json of a run that may be resumed: same inputs as when it started."""

    spec = runs_mod.read_run(directory)
    if spec.get("status") not in runs_mod.RESUMABLE:
        raise InputError(f"run {spec['run_id']} is {spec.get('status')}: it is not resumed", path=directory,
                         hint="start a new run with `weightgate train start`")
    job_id = (spec.get("job_ids") or [None])[-1]
    if job_id and (ws.jobs_dir / job_id).is_dir() and not read_status(ws.jobs_dir / job_id).is_terminal:
        raise InputError(f"run {spec['run_id']} is still running in job {job_id}", path=directory,
                         hint=f"follow it with `weightgate attach {job_id}`; stop it with `weightgate cancel {job_id}`")
    today = Fingerprints(ws).of(FINGERPRINTS)
    changed = [name for name, digest in (spec.get("fingerprints") or {}).items() if today.get(name) != digest]
    if changed:
        raise InputError(f"run {spec['run_id']} cannot be resumed: {', '.join(changed)} changed since it started",
                         path=directory, hint="a resumed run must train on the same data, config, model and "
                                              "precision; start a new run with `weightgate train start`")
    files = _data_digests(Path(spec["train_file"]), Path(spec["val_file"]))
    if spec.get("data_files") and files != spec["data_files"]:
        raise InputError(f"run {spec['run_id']} cannot be resumed: its prepared train/val files changed",
                         path=Path(spec["train_file"]), hint="start a new run with `weightgate train start`")
    return spec


# --- executing (job process or torchrun worker) ----------------------------------------------


def run_plan(spec: dict) -> dict:
    """run.json's precision plan; a run prepared before plans existed computed in fp32 with AdamW."""
    return spec.get("precision_plan") or {"autocast": None, "scaler": False, "optimizer": "adamw",
                                          "attn_implementation": "sdpa"}


def build_model_and_optimizer(spec: dict) -> tuple[Any, Any]:
    """The model and its optimizer (the plan's) on spec["device"] (a worker's spec carries its
    own cuda:<LOCAL_RANK>)."""
    cfg = spec["config"]
    plan = run_plan(spec)
    base = load_base(Path(spec["model_dir"]), spec["precision"], spec.get("device", "cpu"),
                     attn_implementation=plan["attn_implementation"])
    detect_targets(base, spec["targets"])   # the model really has them
    model = add_lora(base, r=cfg["r"], alpha=cfg["alpha"], dropout=cfg["dropout"], targets=spec["targets"],
                     quantized=spec["method"] == "qlora", gradient_checkpointing=cfg["gradient_checkpointing"],
                     seed=cfg["seed"])
    params = [p for _, p in trainable_parameters(model)]
    return model, build_optimizer(params, cfg, plan["optimizer"])


def execute(ws_root: Path, directory: Path, *, rank: int = 0, world: int = 1, resume: bool = False,
            emit: Callable[[str, dict], None] = lambda kind, payload: None,
            should_stop: Callable[[], bool] = lambda: False, loss_transform=None, record: bool = True,
            throttle_s: float = 0.0, device: str | None = None):
    """Load, train and checkpoint; returns the loop's Outcome. Rank 0 writes files and evidence.
    `device`: this process's device when it is not run.json's (a torchrun worker's cuda:<LOCAL_RANK>)."""
    import torch  # lazy: torch only where it runs, never at import
    from transformers import AutoTokenizer  # lazy: transformers only where it runs, never at import


    ws = open_workspace(ws_root)
    spec = runs_mod.read_run(directory)
    if device:
        spec = {**spec, "device": device}
    if str(spec.get("device", "cpu")).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"run {spec['run_id']} trains on {spec['device']}, and torch sees no CUDA device here",
                         path=directory, hint="resume it on the machine (and GPU) it started on; a run does not "
                                              "change device midway")
    cfg = spec["config"]
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train = load_examples(Path(spec["train_file"]), tokenizer, max_seq=spec["max_seq"])
    val = load_examples(Path(spec["val_file"]), tokenizer, max_seq=spec["max_seq"])
    if not val:
        raise InputError("the validation split is empty", path=Path(spec["val_file"]),
                         hint="the best checkpoint is chosen by validation loss: keep 10% for validation")
    resume_from = None
    if resume:
        if rank == 0:
            recover_best(directory)
        resume_from = latest_checkpoint(directory / "checkpoints")
        if resume_from is None:
            emit("log", {"message": "no complete checkpoint yet: starting the run from step 0", "level": "warning"})
    model, optimizer = build_model_and_optimizer(spec)
    lead = rank == 0

    def build_fresh():
        with torch.random.fork_rng(devices=fork_devices(spec.get("device", "cpu"))):
            return build_model_and_optimizer(spec)

    def on_restore(result: dict) -> None:
        if record:
            record_restore(ws, spec["run_id"], result)

    setup = LoopSetup(
        model=model, optimizer=optimizer, train=train, val=val, pad_id=pad_id, seed=cfg["seed"], lr=cfg["lr"],
        max_grad_norm=cfg["max_grad_norm"], divergence_factor=cfg["divergence_factor"],
        micro_batch=spec["batch"]["micro_batch"], effective_batch=spec["batch"]["effective_batch"],
        total_steps=spec["total_steps"], warmup_steps=spec["warmup_steps"], eval_every=cfg["eval_every"],
        run_dir=directory, device=spec.get("device", "cpu"), rank=rank, world=world, emit=emit if lead else
        (lambda kind, payload: None), should_stop=should_stop, build_fresh=build_fresh, on_restore_check=on_restore,
        throttle_s=throttle_s, loss_transform=loss_transform, autocast=run_plan(spec)["autocast"],
        make_scaler=lambda: make_scaler(run_plan(spec), spec.get("device", "cpu")))
    # On the CPU, subnormal floats flush to zero in every thread during the steps, as core.memory.loading
    # does for decoding: x86 computes subnormal products many times slower, and small models'
    # activations and LoRA updates reach them. Always on for a CPU run, so a resumed run computes
    # exactly what an uninterrupted one does (tests/bench/train_throughput.py gives its Trainer
    # baseline the same setting, and reads this run's choice from the log line below).

    flush = setup.device == "cpu" and subnormals_flush_everywhere(torch)
    if lead:
        where = spec.get("device", "cpu") if world == 1 else \
            f"{world} processes on {spec.get('device', 'cpu')} ({spec.get('backend', 'gloo')})"
        flushing = ("; subnormal floats flushed to zero" if flush else
                    "; subnormal floats not flushed (this CPU does not flush them in every thread)"
                    if setup.device == "cpu" else "")
        plan = run_plan(spec)
        computes = (f"; autocast {plan['autocast']}{' + gradient scaler' if plan['scaler'] else ''}"
                    if plan["autocast"] else "") + f"; {plan['optimizer']}, {plan['attn_implementation']} attention"
        emit("log", {"message": f"run {spec['run_id']} on {where}: {spec['method']} at {spec['precision']}{computes}, "
                                f"r {cfg['r']}, "
                                f"targets {', '.join(spec['targets'])}; {len(train)} train / {len(val)} val examples; "
                                f"batch {spec['batch']['micro_batch']} x {spec['batch']['accumulation']} x {world} = "
                                f"{spec['batch']['effective_batch']}; {spec['total_steps']} steps{flushing}"})
        runs_mod.update_run(directory, status="running")
    with flushed_subnormals(torch, flush):
        outcome = run_loop(setup, resume_from=resume_from)
    if lead:
        status = {"finished": "finished", "stopped": "stopped", "diverged": "diverged",
                  "restore_failed": "restore_failed"}[outcome.status]
        runs_mod.update_run(directory, status=status, outcome=outcome.to_dict())
        if record and outcome.status in ("finished", "diverged"):
            record_best(ws, spec["run_id"], outcome.to_dict(), str(directory / "best"))
    return outcome


def new_run_params(ws, nproc: int, steps: int | None, device: str = "auto") -> dict:
    """Check the [training] table, the device and prepare the data split, so bad input fails here.
    `auto` and `cpu` are settled in the job (torch is not imported here); an explicit cuda
    request is checked now against what torch sees."""

    device = check_device_spec(device)
    if device.startswith("cuda"):
        resolve_train_device(device, nproc)
    config = workspace_training_config(ws)
    if config.method == "dpo":
        return preference_run_params(ws, nproc, steps, device)
    if config.effective_batch % nproc:
        raise InputError(f"[training] effective_batch {config.effective_batch} is not divisible by --nproc {nproc}",
                         path=ws.config_path, hint=f"use a multiple of {nproc}")
    prepared = prepare_dataset(ws)
    return {"train_file": str(prepared.train_path), "val_file": str(prepared.val_path),
            "dataset_digest": prepared.digest, "nproc": nproc, "steps": steps, "device": device}


def check_resume_device(spec: dict, device: str) -> None:
    """A resumed run continues on the device it started on; --device may only repeat it."""

    wanted, recorded = check_device_spec(device), str(spec.get("device") or "cpu")
    if wanted == "auto" or wanted == recorded or (wanted == "cuda" and recorded.startswith("cuda")):
        return
    raise InputError(f"run {spec['run_id']} trains on {recorded}; it is resumed there, not on {wanted}",
                     hint="drop --device (a resumed run keeps its device), or start a new run with "
                          f"`weightgate train start --device {wanted}`")
