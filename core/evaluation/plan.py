"""What an eval run is before it runs (torch-free): the target (the workspace's model, precision
and adapter, or a candidate), the eval set and its cases, the messages and generation settings,
and the run's identity.

Run identity. A digest of everything that changes the outputs:
    model          the lock digest (the workspace's model) or a candidate's source + file digest
    precision      digest of the precision decision as written ("absent": the native dtype);
                   equal to the "precision" fingerprint, so evidence and runs line up
    precision_spec the resolved precision: name, dtype, bitsandbytes settings (device-dependent)
    adapter        digest of the adapter decision ("absent": none), = the "adapter" fingerprint
    adapter_files  digest of the adapter's files (a retrained adapter at the same path differs)
    evalset        digest of the eval-set file, = the "evalset.task"/"evalset.general" fingerprint
    prompt         system prompt, few-shot turns, chat template or plain rendering
    chat_template  digest of the tokenizer's chat template text
    generation     the generation config actually used (the model's generation_config.json
                   defaults, then greedy decoding and max_new_tokens, then overrides)
    batch_size     batching changes the arithmetic, so it is part of the identity
    limit          a run over the first N cases only (None: the whole set)
Beside it, `outputs` digests the same with `evalset` replaced by the digest of the cases' inputs
alone: two runs with equal `outputs` generate the same text, so when only expected answers or
scorers changed, the saved outputs are re-scored instead of generated again. Package versions and
the device are recorded as the run's environment, not in the identity; run names, the workspace's
path and the ceilings are not in it either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from weightgate.core.engine.digest import ABSENT, digest_file, digest_value
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.fingerprints import adapter_files_digest, adapter_identity, find_adapter, plain
from weightgate.core.engine.lock import lock_digest, model_dir, read_lock
from weightgate.core.engine.workspace import Workspace, setting_path
from weightgate.core.evaluation.evalsets import EvalCase, EvalSet, load_evalset
from weightgate.core.evaluation.generation import build_messages, chat_template_text, generation_settings
from weightgate.core.memory.loading import precision_spec

SET_SETTINGS = {"task": ("eval_set", "evals/task.jsonl"), "general": ("general_set", "evals/general.jsonl")}


DEFAULT_BATCH_SIZE = 8


# What a run was for; eval.fresh, baselines and ship look at full evaluations of the model as it
# is decided: plain ones, re-scorings of them, and the gate's (the kept adapter's task and general
# runs are exactly what `weightgate eval run` would generate next).
EVAL_KINDS = ("eval", "rescore", "gate")


@dataclass
class Target:
    """A model to evaluate: where its files are and what identifies it."""

    model_dir: Path
    model_id: str                     # lock digest, or a candidate's source + file digest
    label: str                        # for people: the source spec
    precision: object = None          # as decided (a name or table); None: native
    adapter: Path | None = None
    adapter_decision: object = None   # [decisions] adapter as written
    workspace_model: bool = False     # the locked model: verify its files before loading


def decisions(ws: Workspace, config: dict | None = None) -> dict:
    config = config if config is not None else plain(ws.config())
    value = config.get("decisions")
    return value if isinstance(value, dict) else {}


def resolve_adapter(ws: Workspace, value) -> Path | None:
    """`[decisions] adapter`: a directory (relative to the workspace) or an id under
    .weightgate/adapters/ (its `best/` when it has one)."""
    if not value:
        return None
    found = find_adapter(ws, value)
    if found is None:
        text = str(value.get("path") if isinstance(value, dict) else value)
        raise InputError(f"adapter {text!r} not found (no adapter_config.json)", path=ws.config_path,
                         hint="[decisions] adapter is a directory written by peft, or an id under .weightgate/adapters/")
    return found


def workspace_target(ws: Workspace, config: dict | None = None) -> Target:
    """The locked model at the decided precision and adapter (files verified when run)."""

    lock = read_lock(ws)
    if lock is None:
        raise InputError("no model locked in this workspace", path=ws.lock_path,
                         hint="choose and fetch a model first: weightgate weights choose SOURCE; weightgate weights fetch")
    chosen = decisions(ws, config)
    return Target(model_dir=model_dir(ws, lock), model_id=lock_digest(lock), label=lock.source,
                  precision=chosen.get("precision"), adapter=resolve_adapter(ws, chosen.get("adapter")),
                  adapter_decision=chosen.get("adapter"), workspace_model=True)


@dataclass
class EvalPlan:
    ws: Workspace
    set_name: str
    evalset: EvalSet
    cases: list[EvalCase]
    target: Target
    device: str
    settings: dict
    batch_size: int
    limit: int | None
    identity: dict
    kind: str = "eval"
    overrides: dict = field(default_factory=dict)

    @property
    def evalset_rel(self) -> str:
        try:
            return str(self.evalset.path.relative_to(self.ws.root))
        except ValueError:
            return str(self.evalset.path)

    def messages(self, case: EvalCase) -> list[dict]:
        options = self.evalset.options
        return build_messages(case.input, options.system, options.few_shot)


def evalset_path(ws: Workspace, set_name: str, config: dict | None = None) -> Path:
    if set_name not in SET_SETTINGS:
        raise InputError(f"unknown eval set {set_name!r}", hint="--set task or --set general")
    setting, default = SET_SETTINGS[set_name]
    return setting_path(ws, config if config is not None else plain(ws.config()), setting, default)


def load_valid_evalset(path: Path) -> EvalSet:
    """The eval set, or an InputError listing every problem with its line (nothing runs on a
    set with a bad line: a silently skipped case changes the score)."""
    if not path.is_file():
        raise InputError("eval set not found", path=path, hint="write it first (see evals/README.md)")
    evalset = load_evalset(path)
    if evalset.problems:
        first = evalset.problems[0]
        listing = "\n".join(str(problem) for problem in evalset.problems)
        raise InputError(f"{len(evalset.problems)} problem(s) in the eval set:\n{listing}", path=path,
                         line=first.line, hint="fix them (`weightgate eval check` lists them), then run again")
    if not evalset.cases:
        raise InputError("the eval set has no cases", path=path)
    return evalset


def _settings_value(config: dict, key: str, default):
    settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
    value = settings.get(key, default)
    return default if value in (None, "", 0) else value


def inputs_digest(evalset: EvalSet, cases: list[EvalCase]) -> str:
    """What of the eval set reaches the model: the header and each case's id and input."""
    return digest_value({"options": evalset.options.to_dict(), "cases": [(c.id, c.input) for c in cases]})


def scoring_digest(cases: list[EvalCase]) -> str:
    return digest_value([(c.id, c.expected, c.scorer, c.options, c.tags) for c in cases])


def make_identity(*, target: Target, evalset: EvalSet, cases: list[EvalCase], device: str, settings: dict,
                  batch_size: int, limit: int | None) -> dict:
    template = chat_template_text(target.model_dir)
    options = evalset.options
    components = {
        "model": target.model_id,
        "precision": digest_value(target.precision) if target.precision else ABSENT,
        "precision_spec": precision_spec(target.precision, target.model_dir, device),
        "adapter": adapter_identity(target.adapter_decision, target.adapter),
        "adapter_files": adapter_files_digest(target.adapter),
        "evalset": digest_file(evalset.path),
        "prompt": digest_value({"system": options.system, "few_shot": options.few_shot,
                                "format": "chat_template" if template else "plain"}),
        "chat_template": digest_value(template) if template else ABSENT,
        "generation": settings,
        "batch_size": int(batch_size),
        "limit": limit,
    }
    evalset_inputs = inputs_digest(evalset, cases)
    return {"digest": digest_value(components), "components": components,
            "outputs": digest_value({**components, "evalset": evalset_inputs}),
            "evalset_inputs": evalset_inputs, "scoring": scoring_digest(cases)}


def plan_eval(ws: Workspace, set_name: str = "task", *, batch_size: int | None = None, limit: int | None = None,
              device: str = "cpu", overrides: dict | None = None, target: Target | None = None,
              kind: str = "eval") -> EvalPlan:
    """Everything about a run that is known before loading the model, including its identity."""
    config = plain(ws.config())
    evalset = load_valid_evalset(evalset_path(ws, set_name, config))
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    cases = evalset.cases[:limit] if limit else list(evalset.cases)
    limit = limit if limit and limit < len(evalset.cases) else None
    batch_size = int(batch_size or _settings_value(config, "eval_batch_size", DEFAULT_BATCH_SIZE))
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    target = target or workspace_target(ws, config)
    max_new = evalset.options.max_new_tokens or int(_settings_value(config, "max_new_tokens", 0) or 0) or None
    settings = generation_settings(target.model_dir, max_new_tokens=max_new, overrides=overrides)
    identity = make_identity(target=target, evalset=evalset, cases=cases, device=device, settings=settings,
                             batch_size=batch_size, limit=limit)
    return EvalPlan(ws, set_name, evalset, cases, target, device, settings, batch_size, limit, identity, kind,
                    dict(overrides or {}))
