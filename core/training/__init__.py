"""Phase 5, fine-tuning: only when the baseline misses, and only if it wins. LoRA / QLoRA runs
that survive disconnects.

    data/           the training data: formats, checks, near-duplicates, PII, the prepared split
    dataset         check the data, record its items, write the prepared split (one place)
    prompting       few-shot first: the task set with examples, beside the zero-shot baseline
    plan            target modules, micro batch x accumulation from the memory estimate, step counts
    model           the base model at the decided precision (NF4 for QLoRA) with a peft LoRA on top
    batches         canonical train/val JSONL -> token ids and labels (loss on assistant tokens only)
    checkpoint      atomic checkpoints (adapter, optimizer, scheduler, RNG, position), the best
                    adapter, the restore check
    loop            the training loop: exact resume, divergence guard, validation, events
    runs            run directories under .weightgate/adapters/<run_id>/, run.json, listing
    session         prepare a run (device, batch plan, run.json) and execute it; the device rules
                    (auto = a GPU when torch sees one; torchrun workers on cuda:<LOCAL_RANK> with nccl,
                    gloo on the CPU)
    worker          what each torchrun worker runs
    keep_or_reject  the gate of a fine-tune: the task score must rise and the general score hold
    checks          decides phase 5's items (live, and from what runs and data checks recorded)
    jobs            train, data_check, fewshot and tune_gate, each a detached job
    views           what the Fine-tuning screen shows besides the live journal

Nothing here imports torch at module import time; the job process does.
"""
