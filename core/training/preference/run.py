"""A DPO run's preparation, torch-free: the data check and split for `weightgate train start`
when [training] method = "dpo", the prepared pairs' lengths and count for the batch plan, and
the DPO part of the run's identity (run.json "dpo"; the [training] table's digest already
fingerprints method and beta).

core.training.session.prepare_run does the rest of the run's preparation as for SFT (model,
precision, LoRA targets, the memory-planned batch, evidence); training is
core.training.preference.trainer.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.jsonl import iter_jsonl
from weightgate.core.engine.training_config import TrainConfig
from weightgate.core.training.data.prepare import PreparedDataset, blocking_error, load_tokenizer
from weightgate.core.training.dataset import check_training_data
from weightgate.core.training.preference.data import PreferenceUnit, count_tokens

LOSS_TYPE = "sigmoid"          # the DPO paper's loss (TRL's default)
REFERENCE = "the base model with the adapter disabled"


def prepare_preference_dataset(ws) -> PreparedDataset:
    """The checked, cleaned and split preference pairs (evidence recorded), or an InputError
    naming every blocking line."""
    check = check_training_data(ws, fix=True)
    if check.prepared is None:
        raise blocking_error(check.report)
    return check.prepared


def preference_run_params(ws, nproc: int, steps: int | None, device: str) -> dict:
    """The train job's params of a new DPO run (`device` already checked by
    core.training.session.new_run_params)."""
    if nproc != 1:
        raise InputError(f"[training] method = \"dpo\" trains in one process; --nproc {nproc} is for SFT runs",
                         path=ws.config_path, hint="drop --nproc (DPO runs on one CPU or one GPU)")
    prepared = prepare_preference_dataset(ws)
    return {"train_file": str(prepared.train_path), "val_file": str(prepared.val_path),
            "dataset_digest": prepared.digest, "nproc": 1, "steps": steps, "device": device}


def read_prepared_pairs(path: Path) -> list[PreferenceUnit]:
    """The prepared split's pairs ({"id", "prompt", "chosen", "rejected"} in TRL's conversational form)."""
    pairs = []
    for line in iter_jsonl(Path(path)):
        value = line.value
        try:
            pairs.append(PreferenceUnit(value["id"], line.number, None, None, [], "preference",
                                        chosen=value["chosen"][0]["content"], rejected=value["rejected"][0]["content"],
                                        prompt_messages=value["prompt"]))
        except (KeyError, IndexError, TypeError):
            raise InputError("not a prepared preference pair", path=Path(path), line=line.number,
                             hint="prepared files are written by `weightgate data check --fix`; prepare again") from None
    return pairs


def pair_count(path: Path) -> int:
    return len(read_prepared_pairs(path))


def longest_pair(paths: list[Path], model_dir: Path) -> int:
    """The longest prompt + answer of the prepared pairs, in tokens (the run's max_seq)."""
    tokenizer = load_tokenizer(model_dir)
    tokenizer.model_max_length = 10 ** 9
    pairs = [pair for path in paths for pair in read_prepared_pairs(path)]
    problems = count_tokens(pairs, tokenizer)
    if problems:
        raise InputError(problems[0].message, path=paths[0], line=problems[0].line, hint=problems[0].hint)
    return max(pair.tokens for pair in pairs)


def trl_version() -> str | None:
    try:
        return version("trl")
    except PackageNotFoundError:
        return None


def dpo_identity(cfg: TrainConfig) -> dict:
    """What makes a DPO run besides the LoRA config: run.json's "dpo" and the release's [training]."""
    return {"beta": cfg.beta, "loss_type": LOSS_TYPE, "reference": REFERENCE, "trainer": "trl.DPOTrainer",
            "trl": trl_version()}
