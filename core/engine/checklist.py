"""The six phases and their items, as data. Sources: ../shared/seeds/ and DESIGN.md.

Each item says how it is decided:
- AUTO: a check function computes it from the workspace (see core/checks.py), or a job
  records evidence for it (evals, downloads, training), tied to the fingerprints it names.
- ATTEST: a person confirms it with a note; the attestation holds while the fingerprints it
  names are unchanged (an attestation about the chosen model goes stale when the choice changes).

Seed lines that are not items of their own, and where they went:
- "Set a conservative learning rate" (seed 0): tune.lora_config records lr and warns above 5e-4;
  tune.gate's general set is what catches the forgetting an aggressive rate causes.
- "Use a parameter-efficient method like LoRA" (seeds 0, 1, 4): the only methods weightgate
  trains are LoRA and QLoRA; tune.lora_config records which.
- "Hold-out set performance" (seed 2), "held-out test set" (seeds 3, 4): the task eval set is the
  hold-out: tune.leakage proves no case of it is in the training data, tune.gate scores on it.
- "Task requires deep specialization", "Use case fit", "Performance gains justify cost" (seed 3):
  phase 5 opens only when the baseline misses the threshold (a measured gap), and tune.gate keeps
  a fine-tune only when it measurably wins.
- "Examples are diverse and representative" (seed 3), "Distribution balancing" (seed 2):
  tune.balance measures the tag ratio; whether the examples look like real inputs is part of the
  tune.data_review attestation.
- "GPU resources available", "Batch size fits in memory" (seed 3): tune.effective_batch.
- "Training framework selected" (seed 3): weightgate (transformers + peft) is the framework.
- "Pin the base model checkpoint", "Record the quantization scheme", "Register adapter hashes and
  the data" (seed 1), "Model lineage tracking" (seed 2), "Reproducibility" (seed 4): the lock
  (verify.*) and ship.manifest.
- "Write the runbook: how to load, serve and roll back" (seed 1): ship.serving (the exact serve
  commands), ship.rollback, and the model card `weightgate release ship` writes.
- "Inference cost tracking" (seed 2), "Set alerts on quality, latency and cost drift" (seed 1),
  "Drift detection pipeline" (seed 2): ship.monitoring.
- "Re-evaluate when the base model updates" (seed 0): eval.fresh and ship.canary.
- Not about LLM weights, so not items: DPO alignment (weightgate does not train DPO), speech and
  audio fine-tuning, and seed 4's service-role keys and runtime diagnostic flags (application
  operations).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from weightgate.core.engine.errors import InputError


class Severity(str, Enum):
    CRITICAL = "critical"        # holds the next gate until it passes
    RECOMMENDED = "recommended"  # holds the gate until it passes or is waived with a reason
    OPTIONAL = "optional"        # never holds a gate


class Mode(str, Enum):
    AUTO = "auto"
    ATTEST = "attest"


@dataclass(frozen=True)
class Phase:
    number: int
    key: str
    title: str
    why: str


@dataclass(frozen=True)
class Item:
    id: str
    phase: int
    title: str
    why: str
    severity: Severity
    mode: Mode
    # Names of the input fingerprints its evidence depends on (core/fingerprints.py).
    inputs: tuple[str, ...] = ()
    # For AUTO items whose check is not built yet: the capability (and issue) that decides it.
    needs: str | None = None


PHASES: tuple[Phase, ...] = (
    Phase(1, "selection", "Selection",
          "Define the task and requirements, then pick the smallest model that clears them."),
    Phase(2, "verification", "Verification",
          "Treat every weight file as code from the internet: know and prove which bytes you run."),
    Phase(3, "memory", "Memory & precision",
          "Budget weights and context cache; run at the largest precision that fits."),
    Phase(4, "evaluation", "Evaluation",
          "Measure on 20-50 real cases; every later decision is a guess without it."),
    Phase(5, "finetuning", "Fine-tuning",
          "A last resort: only when a measured quality gap remains that prompting cannot close."),
    Phase(6, "deployment", "Deployment",
          "Ship versions like releases: checksummed, documented, health-checked, reversible."),
)

C, R, O = Severity.CRITICAL, Severity.RECOMMENDED, Severity.OPTIONAL
A, T = Mode.AUTO, Mode.ATTEST

NEEDS_SOURCES = "weightgate weights add SOURCE (reads the metadata, no weights)"
NEEDS_VERIFY = "weightgate weights fetch / weightgate weights verify (the lock and the hashes)"
NEEDS_EVAL = "weightgate eval run (a run of the eval set)"
NEEDS_BENCHMARK = "weightgate eval benchmark (every shortlisted candidate on the task set)"
NEEDS_CHOICE = ("weightgate eval benchmark, then weightgate weights choose SPEC --reason ... "
                "(the candidate that clears every requirement)")
NEEDS_DETERMINISM = "weightgate eval determinism (temperature-0 repeats of the task set)"
NEEDS_LATENCY = "weightgate eval latency (TTFT and tokens/s at several batch sizes)"
NEEDS_FIT = "weightgate memory fit (estimates every precision, records the largest that fits)"
NEEDS_MEASURE = "weightgate memory measure (loads the model at the chosen precision)"
NEEDS_QUANT_CHECK = "weightgate memory quant-check (the task set at the reference and the chosen precision)"
NEEDS_TRAIN = "fine-tuning data checks and training (issue 6)"
NEEDS_DATA_CHECK = "weightgate data check (--fix writes the cleaned, scrubbed, split copy)"
NEEDS_FEWSHOT = "weightgate train fewshot (the task set with few-shot examples, beside the baseline)"
NEEDS_GATE = "weightgate train gate (the adapter on the task and general sets vs the baselines)"
NEEDS_TRAIN_START = "weightgate train start (records the config and the batch plan when a run starts)"
NEEDS_TRAIN_RESTORE = "weightgate train start (checks a checkpoint restore after step 1)"
NEEDS_TRAIN_FINISH = "weightgate train start (a run that finishes; best checkpoint by validation loss)"
NEEDS_REGISTRY = "weightgate release ship (builds a registry version: checksums, manifest, card)"
NEEDS_SHIP_MERGE = "weightgate release ship (merges or keeps the adapter; merged outputs checked equal)"
NEEDS_SHIP_LATENCY = "weightgate release ship (measures the shipped version against the ceilings)"
NEEDS_SHIP_SERVING = "weightgate release ship (writes the transformers serve / vLLM / SGLang commands)"
NEEDS_HEALTH = "weightgate release health VERSION (a cold load and a ping)"
NEEDS_CANARY = "weightgate release canary VERSION (the eval set on the shipped version)"
NEEDS_REVIEW = "a blind A/B review of two runs (R on the Compare screen; weightgate eval reviews shows it)"
NEEDS_ROLLBACK = "a second weightgate release ship (the previous version is the rollback target)"
NEEDS_OPEN_GATES = "weightgate release ship while phases 1-5 pass (the manifest records the gates it shipped through)"

# Records that are not an item's but carry fingerprints all the same, with their inputs: the
# decision that phase 5 is not needed (the baseline meets the threshold), and a training run's
# identity (a resume must find the inputs it started on; its items are tune.best_checkpoint's).
FINETUNING_DECISION_INPUTS = ("model", "precision", "evalset.task", "requirements")
TRAINING_RUN_INPUTS: tuple[str, ...] = ("train_config", "dataset", "model", "precision")

ITEMS: tuple[Item, ...] = (
    # Phase 1: selection
    Item("select.task", 1, "Task defined in measurable terms",
         "You cannot size a model for a task you have not described concretely.", C, A,
         ("requirements",)),
    Item("select.threshold", 1, "Quality threshold set (metric + score)",
         "Without a fixed target, evaluation turns circular: 'good' shifts to fit the model.", C, A,
         ("requirements",)),
    Item("select.ceilings", 1, "Latency, throughput, memory and cost ceilings set",
         "The hard constraints every candidate must live within.", C, A, ("requirements",)),
    Item("select.deployment", 1, "Deployment context recorded",
         "Self-hosted or API, on-prem or cloud, and data residency decide what can run where.", C, A,
         ("requirements",)),
    Item("select.intended_use", 1, "Intended use declared (commercial, distribution)",
         "The licence check in phases 2 and 6 needs to know what you will do with the model.", C, A,
         ("requirements",)),
    Item("select.evalset", 1, "Eval set exists with at least 20 real cases",
         "Benchmark candidates on your data, not on leaderboards; build it before anything else.", C, A,
         ("evalset.task",)),
    Item("select.shortlist", 1, "Candidates shortlisted smallest first",
         "Parameter count is a capacity ceiling, not a quality guarantee; oversizing wastes money.", C, A,
         ("candidates",), NEEDS_SOURCES),
    Item("select.training_quality", 1, "Training quality of the candidates checked",
         "Data and compute decide how much of the parameter capacity is actually usable.", R, T,
         ("candidates",)),
    Item("select.domain_fit", 1, "Domain fit confirmed",
         "A general model may need adaptation that a domain model would not.", R, T, ("candidates",)),
    Item("select.benchmark", 1, "Candidates benchmarked on the eval set (score, latency, cost)",
         "Scores on your cases, latency and cost per task are what the choice is made on.", C, A,
         ("candidates", "evalset.task", "prices"), NEEDS_BENCHMARK),
    Item("select.choice", 1, "A choice that clears every requirement",
         "A model is a candidate only if it clears every constraint, or a relaxation is recorded.", C, A,
         ("choice", "requirements", "candidates", "evalset.task", "prices"), NEEDS_CHOICE),

    # Phase 2: verification
    Item("verify.safetensors", 2, "Weights in safetensors (pickle only if explicitly trusted)",
         "Safetensors cannot execute code on load; legacy pickle files can.", C, A,
         ("model",), NEEDS_VERIFY),
    Item("verify.checksum", 2, "Every file's sha256 matches the published hash",
         "Confirms the download is complete and untampered.", C, A, ("model", "weights_on_disk"),
         NEEDS_VERIFY),
    Item("verify.headers", 2, "Safetensors headers valid (offsets, dtypes, sizes)",
         "A malformed header is a truncated or tampered file; catch it before a loader does.", C, A,
         ("model", "weights_on_disk"), NEEDS_VERIFY),
    Item("verify.pickle", 2, "No pickle loaded unscanned or untrusted",
         "Pickle can run arbitrary code when loaded; only fully trusted, scanned files qualify.", C, A,
         ("model",), NEEDS_VERIFY),
    Item("verify.remote_code", 2, "No remote code unless trusted at a pinned commit",
         "trust_remote_code runs the repo's Python; a moving branch can change it under you.", C, A,
         ("model",), NEEDS_VERIFY),
    Item("verify.source", 2, "Source and exact revision recorded",
         "You will need it for reproducibility and audits.", C, A, ("model",), NEEDS_VERIFY),
    Item("verify.license", 2, "Licence recorded and compatible with the intended use",
         "The base model's licence must allow your commercial use and distribution.", C, A,
         ("model", "requirements"), NEEDS_VERIFY),

    # Phase 3: memory & precision
    Item("memory.weights", 3, "Weight memory estimated",
         "Parameters x bytes per parameter is the starting budget.", C, A, ("model",), NEEDS_FIT),
    Item("memory.kv_cache", 3, "Context cache budgeted (target context x batch)",
         "The KV cache grows with input length and is the most commonly forgotten cost.", C, A,
         ("model", "requirements", "memory_settings"), NEEDS_FIT),
    Item("memory.fits", 3, "Chosen precision fits with headroom",
         "Budget 20-40% headroom over the estimate, or it will fail under load.", C, A,
         ("model", "precision", "requirements", "memory_settings"), NEEDS_FIT),
    Item("memory.largest_precision", 3, "Largest precision that fits (native, then 8-bit, then 4-bit)",
         "Quantize to the largest precision that fits, not the smallest available.", R, A,
         ("model", "precision", "requirements", "memory_settings"), NEEDS_FIT),
    Item("memory.measured", 3, "Measured memory matches the estimate",
         "An estimate you never checked is a guess; measure the loaded model.", R, A,
         ("model", "precision"), NEEDS_MEASURE),
    Item("memory.quant_quality", 3, "Quantized quality verified on hard cases",
         "Quality loss hides on easy cases and appears on edge cases.", C, A,
         ("model", "precision", "evalset.task", "quant_settings"), NEEDS_QUANT_CHECK),
    Item("memory.offload", 3, "Sharding or offload only if quantization is not enough",
         "Offloading trades a lot of latency; use it only when nothing else fits.", O, T,
         ("model", "precision")),

    # Phase 4: evaluation
    Item("eval.size", 4, "20-50 real cases in the task eval set",
         "Without measurement, every later decision is a guess.", C, A, ("evalset.task",)),
    Item("eval.hard_edge", 4, "Hard and edge cases present",
         "Those are where quantization and fine-tuning quietly break.", C, A, ("evalset.task",)),
    Item("eval.general_set", 4, "General-capability regression set exists",
         "A held-out general set catches catastrophic forgetting after fine-tuning.", R, A,
         ("evalset.general",)),
    Item("eval.baseline", 4, "Baseline recorded for the current model and precision",
         "You cannot tell whether a change helped without a before.", C, A,
         ("model", "precision", "evalset.task"), NEEDS_EVAL),
    Item("eval.fresh", 4, "Results fresh after the last change",
         "Model, precision or weight changes can all regress quality: re-run after every change.", C, A,
         ("model", "precision", "adapter", "evalset.task"), NEEDS_EVAL),
    Item("eval.determinism", 4, "Temperature-0 repeats identical",
         "Structured-output tasks need the same answer for the same prompt.", R, A,
         ("model", "precision", "evalset.task"), NEEDS_DETERMINISM),
    Item("eval.latency", 4, "TTFT and tokens/s across batch sizes within ceilings",
         "Latency across batch sizes defines the production hardware requirements.", C, A,
         ("model", "precision", "requirements"), NEEDS_LATENCY),
    Item("eval.human_review", 4, "Blind A/B review by a domain expert",
         "Experts ranking outputs blind catch what automatic scorers miss.", R, A,
         ("model", "precision", "adapter", "evalset.task"), NEEDS_REVIEW),

    # Phase 5: fine-tuning (only if needed)
    Item("tune.prompting_first", 5, "Prompt engineering and few-shot tried first (scores side by side)",
         "Fine-tuning adds permanent cost; many fine-tunes should be prompts.", C, A,
         ("model", "precision", "evalset.task"), NEEDS_FEWSHOT),
    # weightgate cannot build a retrieval pipeline for the task, so a person says what was tried.
    Item("tune.retrieval_first", 5, "Retrieval (RAG) tried or ruled out before fine-tuning",
         "Missing knowledge is a retrieval problem; fine-tuning is for behaviour and format.", C, T,
         ("requirements", "model")),
    Item("tune.data_size", 5, "Enough clean training examples (a few hundred for LoRA)",
         "A few hundred excellent examples beat thousands of noisy ones; too few cannot teach.", R, A,
         ("dataset", "data_config")),
    Item("tune.data_review", 5, "Labels checked accurate; examples representative of real inputs",
         "A model learns its labels' mistakes; a person has to read a sample.", C, T, ("dataset",)),
    Item("tune.format", 5, "Training data follows the model's prompt format",
         "Format mismatches degrade quality; train and deploy with the same template.", C, A,
         ("dataset", "model"), NEEDS_DATA_CHECK),
    Item("tune.dedup", 5, "Near-duplicates removed",
         "Duplicates cause overfitting on specific phrases.", C, A, ("dataset", "data_config"), NEEDS_DATA_CHECK),
    Item("tune.leakage", 5, "No eval-set leakage into the training data",
         "A leaked eval case makes the score a memory test.", C, A,
         ("dataset", "evalset.task", "evalset.general", "data_config"), NEEDS_DATA_CHECK),
    Item("tune.token_lengths", 5, "Token lengths fit the context (nothing silently truncated)",
         "Over-long examples are cut off mid-answer and teach the wrong thing.", C, A,
         ("dataset", "model"), NEEDS_DATA_CHECK),
    Item("tune.pii", 5, "PII scrubbed from the training data",
         "Compliance: personal data must not be baked into weights.", C, A, ("dataset",), NEEDS_DATA_CHECK),
    Item("tune.balance", 5, "Edge cases and common queries balanced",
         "A skewed dataset biases the model toward high-frequency patterns.", R, A,
         ("dataset", "data_config"), NEEDS_DATA_CHECK),
    Item("tune.split", 5, "Train/validation split (90/10)",
         "Validation loss is how the best checkpoint is chosen and overfitting is seen.", C, A,
         ("dataset", "data_config"), NEEDS_DATA_CHECK),
    Item("tune.lora_config", 5, "LoRA config documented (r, alpha = 2r, dropout, targets, lr, epochs, warmup)",
         "Conservative rates avoid catastrophic forgetting; documented settings can be reproduced.", R, A,
         ("train_config",), NEEDS_TRAIN_START),
    Item("tune.effective_batch", 5, "Effective batch fits memory (gradient accumulation)",
         "Balances training stability against the memory you have.", C, A,
         ("train_config", "model", "precision"), NEEDS_TRAIN_START),
    Item("tune.qlora_nf4", 5, "QLoRA trains on an NF4 base (double quantization)",
         "4-bit NormalFloat keeps the most precision for the memory; not-needed for plain LoRA.", R, A,
         TRAINING_RUN_INPUTS),
    Item("tune.loss_curves", 5, "Training and validation loss monitored during the run",
         "Train vs validation loss shows divergence and overfitting while there is time to act.", C, A,
         TRAINING_RUN_INPUTS),
    Item("tune.checkpoint_restore", 5, "Checkpoint restore verified before the long run",
         "A run you cannot resume is a run you can lose.", R, A, ("train_config", "model"), NEEDS_TRAIN_RESTORE),
    Item("tune.best_checkpoint", 5, "Run finished; best checkpoint chosen by validation loss",
         "The last step is rarely the best one.", C, A,
         TRAINING_RUN_INPUTS, NEEDS_TRAIN_FINISH),
    Item("tune.gate", 5, "Task score rises and general score holds",
         "Only keep a fine-tune that measurably wins without harming what worked.", C, A,
         ("model", "precision", "adapter", "evalset.task", "evalset.general", "gate_config"), NEEDS_GATE),

    # Phase 6: deployment
    Item("ship.version", 6, "Version named", "Treat models like releases so you can roll back.", C, A,
         ("release",), NEEDS_REGISTRY),
    Item("ship.gates", 6, "Shipped through open gates (phases 1-5 passed when it shipped)",
         "A release that skipped the checklist is a guess; an override is recorded, never silent.", C, A,
         ("release",), NEEDS_OPEN_GATES),
    Item("ship.checksums", 6, "Checksums of what you shipped stored",
         "Lets you verify later that you are running what you think you are.", C, A,
         ("release",), NEEDS_REGISTRY),
    Item("ship.manifest", 6, "Manifest: base model, revision, precision, adapter, dataset, settings, seeds, code, evals",
         "Anything undocumented cannot be reproduced.", C, A, ("release",), NEEDS_REGISTRY),
    Item("ship.merge", 6, "Merge decision made; merged output matches adapter output",
         "Merge for speed or keep adapters for swapping, and prove the merge changed nothing.", C, A,
         ("release",), NEEDS_SHIP_MERGE),
    Item("ship.health", 6, "Health check: loads and answers a ping",
         "A readiness probe that proves the weights are loaded and responding.", C, A,
         ("release",), NEEDS_HEALTH),
    Item("ship.latency", 6, "Shipped version's latency within ceilings",
         "The shipped artefact, not the dev setup, must meet the ceilings.", C, A,
         ("release", "requirements"), NEEDS_SHIP_LATENCY),
    Item("ship.license", 6, "Licence allows the intended use and distribution",
         "Shipping a fine-tune can be distribution under the base model's licence.", C, A,
         ("release", "requirements"), NEEDS_REGISTRY),
    Item("ship.rollback", 6, "Rollback target exists",
         "A release you cannot undo is a gamble.", R, A, ("release",), NEEDS_ROLLBACK),
    Item("ship.canary", 6, "Canary eval passes against the shipped version",
         "Scheduled canaries catch silent drift and upstream changes.", C, A,
         ("release", "evalset.task"), NEEDS_CANARY),
    Item("ship.serving", 6, "Serving engine compatibility checked (vLLM / SGLang commands)",
         "Optimized engines multiply throughput; know the exact serve command.", R, A,
         ("release",), NEEDS_SHIP_SERVING),
    # weightgate quantizes with bitsandbytes (memory.quant_quality measures that); AWQ and GGUF
    # conversions happen in the serving stack, so a person attests what they measured.
    Item("ship.quantization", 6, "Production quantization (AWQ / GGUF) evaluated",
         "A production format can cut VRAM; measure its quality cost before serving it.", R, T,
         ("release",)),
    Item("ship.warmup", 6, "Cold start measured; warm-up before traffic",
         "New replicas time out while weights load; probe readiness with a ping first.", O, A,
         ("release",)),
    Item("ship.monitoring", 6, "Quality, latency and cost drift monitored; loop-back trigger defined",
         "A workflow that ends at deployment is incomplete; know when to re-enter phase 1 or 2.", R, T,
         ("release",)),
    Item("ship.fallback", 6, "Fallback to the previous version or a larger model defined",
         "Errors and low-confidence answers need somewhere safe to go.", R, T, ("release",)),
)

ITEMS_BY_ID: dict[str, Item] = {item.id: item for item in ITEMS}


def phase(number: int) -> Phase:
    return PHASES[number - 1]


def items_of(phase_number: int) -> list[Item]:
    return [item for item in ITEMS if item.phase == phase_number]


def get_item(item_id: str) -> Item:
    try:
        return ITEMS_BY_ID[item_id]
    except KeyError:
        close = [i for i in ITEMS_BY_ID if item_id.split(".")[-1] in i]
        raise InputError(
            f"no checklist item named {item_id!r}",
            hint=("did you mean " + ", ".join(close[:5]) + "?") if close
            else "`weightgate status` lists every item id",
        ) from None
