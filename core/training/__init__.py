"""LoRA / QLoRA fine-tuning that survives disconnects (phase 5).

    batches     canonical train/val JSONL -> token ids and labels (loss on assistant tokens only)
    plan        target modules, micro batch x accumulation from the memory estimate, step counts
    model       the base model at the decided precision (NF4 for QLoRA) with a peft LoRA on top
    checkpoint  atomic checkpoints (adapter, optimizer, scheduler, RNG, position), the best
                adapter, the restore check
    loop        the training loop: exact resume, divergence guard, validation, events
    runs        run directories under .weightgate/adapters/<run_id>/, run.json, listing
    session     prepare a run (device, batch plan, run.json) and execute it; the device rules
                (auto = a GPU when torch sees one; torchrun workers on cuda:<LOCAL_RANK> with nccl,
                gloo on the CPU); training/jobs.py launches one process or torchrun
    worker      what each torchrun worker runs
    records     evidence for tune.lora_config, tune.effective_batch, tune.checkpoint_restore,
                tune.best_checkpoint

Nothing here imports torch at module import time; the job process does.
"""
