"""Eval runs on disk: `.weightgate/runs/<run-id>/run.json` + `cases.jsonl` (a shared contract).

run.json
    {"id", "name", "created", "set": "task"|"general", "evalset_path",
     "identity": {"digest": "sha256:...",
                  "components": {"model", "precision", "adapter", "evalset", "prompt",
                                 "chat_template", "generation": {...}, "batch_size", "limit"},
                  "outputs": "sha256:...",        # digest of what decides the outputs alone
                  "evalset_inputs": "sha256:...", # the eval set minus expected/scorer/tags
                  "scoring": "sha256:..."},       # expected/scorer/options of every case
     "environment": {"torch", "transformers", "peft", "bitsandbytes", "python", "device", "weightgate"},
     "config": {...}, "summary": {"cases", "passed", "score", "by_tag": {tag: {...}}, "tokens_in",
     "tokens_out", "seconds", "tokens_per_s"}, "status": "complete"|"partial"|"failed",
     "baseline": bool,
     "reused": [{"time", "kind", "job"}]}   # requests answered with this run (optional)
cases.jsonl
    one line per case: {"id", "prompt", "output", "expected", "scorer", "score", "passed", "tags",
    "tokens_in", "tokens_out", "seconds"} (+ "detail", "options" where known)

Readers must ignore keys they do not know: the format grows only by adding keys. This module
stays torch-free (the TUI, compare and status read runs).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable

from weightgate.core.engine.atomic import append_line, write_atomic
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.jsonl import iter_jsonl
from weightgate.core.engine.workspace import Workspace

RUN_FILE = "run.json"
CASES_FILE = "cases.jsonl"
COMPLETE, PARTIAL, FAILED = "complete", "partial", "failed"
RUN_STATUSES = (COMPLETE, PARTIAL, FAILED)
SETS = ("task", "general")
ANY = object()   # baseline_run(..., precision=ANY): do not filter on that component


@dataclass
class CaseResult:
    id: str
    prompt: str
    output: str
    expected: list
    scorer: str
    score: float
    passed: bool
    tags: list[str] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)   # keys beyond the contract (detail, options, ...)

    def to_dict(self) -> dict:
        data = asdict(self)
        extra = data.pop("extra")
        return {**data, **{key: value for key, value in extra.items() if key not in data}}

    @classmethod
    def from_dict(cls, data: dict) -> "CaseResult":
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {key: data[key] for key in known if key in data}
        values.setdefault("expected", [])
        for key in ("id", "prompt", "output", "scorer"):
            values.setdefault(key, "")
        values.setdefault("score", 0.0)
        values.setdefault("passed", False)
        return cls(**values, extra={key: value for key, value in data.items() if key not in known})


@dataclass
class Run:
    id: str
    name: str
    created: float
    set: str
    evalset_path: str
    identity: dict
    environment: dict
    config: dict
    summary: dict
    status: str
    baseline: bool = False
    extra: dict = field(default_factory=dict)      # run.json keys beyond the contract
    path: Path | None = field(default=None, compare=False)
    _cases: list[CaseResult] | None = field(default=None, repr=False, compare=False)

    @property
    def digest(self) -> str:
        return str(self.identity.get("digest", ""))

    @property
    def components(self) -> dict:
        return dict(self.identity.get("components") or {})

    @property
    def last_used(self) -> float:
        """When the run was made or last reused (a reused run counts as just made: "latest" means it)."""
        reuses = self.extra.get("reused")
        times = [float(r.get("time") or 0.0) for r in reuses if isinstance(r, dict)] if isinstance(reuses, list) else []
        return max([self.created, *times])

    @property
    def score(self) -> float | None:
        return self.summary.get("score")

    @property
    def cases(self) -> list[CaseResult]:
        """Loaded on first use, so listing runs never reads every cases.jsonl."""
        if self._cases is None:
            self._cases = read_cases(self.path) if self.path is not None else []
        return self._cases

    @cases.setter
    def cases(self, value: list[CaseResult]) -> None:
        self._cases = list(value)

    def case(self, case_id: str) -> CaseResult | None:
        return next((c for c in self.cases if c.id == case_id), None)

    def to_dict(self) -> dict:
        data = {"id": self.id, "name": self.name, "created": self.created, "set": self.set,
                "evalset_path": self.evalset_path, "identity": self.identity,
                "environment": self.environment, "config": self.config, "summary": self.summary,
                "status": self.status, "baseline": self.baseline}
        return {**data, **{key: value for key, value in self.extra.items() if key not in data}}


# --- ids and paths --------------------------------------------------------------------------


def new_run_id(set_name: str, created: float | None = None) -> str:
    """UTC time first so ids sort by time; a random tail keeps concurrent runs apart."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(created or time.time()))
    slug = re.sub(r"[^a-z0-9]+", "-", set_name.lower()).strip("-")[:16] or "run"
    return f"{stamp}-{slug}-{secrets.token_hex(2)}"


def run_dir(ws: Workspace, run_id: str) -> Path:
    return ws.runs_dir / run_id


# --- writing --------------------------------------------------------------------------------


def write_run(ws: Workspace, run: Run, cases: Iterable[CaseResult] | None = None) -> Path:
    """Write run.json (atomically) and, when `cases` is given, the whole cases.jsonl."""
    directory = run_dir(ws, run.id)
    directory.mkdir(parents=True, exist_ok=True)
    if cases is not None:
        run.cases = list(cases)
        text = "".join(json.dumps(case.to_dict(), ensure_ascii=False) + "\n" for case in run.cases)
        write_atomic(directory / CASES_FILE, text)
    write_atomic(directory / RUN_FILE, json.dumps(run.to_dict(), indent=2, ensure_ascii=False,
                                                  default=str) + "\n")
    run.path = directory
    return directory


def append_case(ws: Workspace, run_id: str, case: CaseResult) -> None:
    """One case as soon as it is scored: an interrupted run keeps every finished case."""
    append_line(run_dir(ws, run_id) / CASES_FILE, json.dumps(case.to_dict(), ensure_ascii=False))


MAX_REUSES_KEPT = 50


def record_reuse(ws: Workspace, run: Run, *, kind: str, job: str | None = None) -> Run:
    """Note in run.json that a request was answered with this run instead of generating again
    (the newest MAX_REUSES_KEPT); from now on it sorts as the newest run."""
    reuses = run.extra.get("reused") if isinstance(run.extra.get("reused"), list) else []
    run.extra["reused"] = [*reuses, {"time": time.time(), "kind": kind, "job": job}][-MAX_REUSES_KEPT:]
    write_run(ws, run)
    return run


def set_baseline(ws: Workspace, run_id: str, value: bool = True) -> Run:
    run = read_run(ws, run_id)
    run.baseline = value
    write_run(ws, run)
    return run


# --- reading --------------------------------------------------------------------------------


def read_cases(directory: Path) -> list[CaseResult]:
    path = Path(directory) / CASES_FILE
    if not path.exists():
        return []
    # A torn last line is a case whose append never finished (a killed run): not corruption.
    return [CaseResult.from_dict(line.value) for line in iter_jsonl(path, allow_partial_tail=True)
            if isinstance(line.value, dict)]


def _load(directory: Path) -> Run:
    path = directory / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("not a run (no run.json)", path=directory) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno, column=exc.colno,
                         hint="run.json is written by weightgate; delete the run directory") from None
    if not isinstance(data, dict):
        raise InputError("run.json must be a JSON object", path=path)
    contract = {"id", "name", "created", "set", "evalset_path", "identity", "environment", "config",
                "summary", "status", "baseline"}
    return Run(id=str(data.get("id", directory.name)), name=str(data.get("name", "")),
               created=float(data.get("created") or 0.0), set=str(data.get("set", "task")),
               evalset_path=str(data.get("evalset_path", "")), identity=dict(data.get("identity") or {}),
               environment=dict(data.get("environment") or {}), config=dict(data.get("config") or {}),
               summary=dict(data.get("summary") or {}), status=str(data.get("status", PARTIAL)),
               baseline=bool(data.get("baseline", False)),
               extra={key: value for key, value in data.items() if key not in contract},
               path=directory)


def read_run(ws: Workspace, run_id: str) -> Run:
    """The run with exactly this id, or a unique prefix of one (see find_run)."""
    return find_run(ws, run_id)


def list_runs(ws: Workspace, set_name: str | None = None) -> list[Run]:
    """Every readable run, newest first: by when it was made or last reused (cases not loaded
    until `.cases` is used)."""
    if not ws.runs_dir.is_dir():
        return []
    runs = []
    for directory in ws.runs_dir.iterdir():
        if not (directory / RUN_FILE).is_file():
            continue
        try:
            run = _load(directory)
        except InputError:
            continue   # a damaged run does not hide the others; `weightgate eval runs` shows the rest
        if set_name is None or run.set == set_name:
            runs.append(run)
    runs.sort(key=lambda r: (r.last_used, r.id), reverse=True)
    return runs


def find_run(ws: Workspace, id_or_prefix: str) -> Run:
    """The run whose id is `id_or_prefix` or uniquely starts with it; InputError otherwise."""
    wanted = (id_or_prefix or "").strip()
    ids = sorted(p.name for p in ws.runs_dir.iterdir() if (p / RUN_FILE).is_file()) \
        if ws.runs_dir.is_dir() else []
    if wanted in ids:
        return _load(ws.runs_dir / wanted)
    matches = [run_id for run_id in ids if wanted and run_id.startswith(wanted)]
    if len(matches) == 1:
        return _load(ws.runs_dir / matches[0])
    if not matches:
        raise InputError(f"no run matches {wanted!r}", path=ws.runs_dir,
                         hint="`weightgate eval runs` lists the run ids" if ids else "no eval runs yet: `weightgate eval run`")
    shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
    raise InputError(f"{wanted!r} matches {len(matches)} runs: {shown}", path=ws.runs_dir,
                     hint="give more characters of the run id")


def _matches(run: Run, wanted: dict) -> bool:
    components = run.components
    return all(value is ANY or components.get(key) == value for key, value in wanted.items())


def baseline_run(ws: Workspace, set_name: str = "task", **components) -> Run | None:
    """The newest complete run marked baseline for `set_name` whose identity components equal
    the given ones, e.g. baseline_run(ws, model=..., precision=..., adapter="absent") for the
    base model's baseline to compare a fine-tune against. Components not given are not checked."""
    for run in list_runs(ws, set_name):
        if run.baseline and run.status == COMPLETE and _matches(run, components):
            return run
    return None


def run_with_identity(ws: Workspace, set_name: str, digest: str, kinds: Iterable[str] | None = None) -> Run | None:
    """A complete run of the set whose identity is `digest`: what would be generated again.
    kinds: only runs made for one of these purposes (config.kind); None: any."""
    wanted = set(kinds) if kinds is not None else None
    for run in list_runs(ws, set_name):
        if (run.status == COMPLETE and run.digest == digest
                and (wanted is None or run.config.get("kind", "eval") in wanted)):
            return run
    return None


def latest_run(ws: Workspace, set_name: str = "task", *, complete: bool = True, **components) -> Run | None:
    """The newest run of a set (complete ones only by default) matching the given components."""
    for run in list_runs(ws, set_name):
        if (not complete or run.status == COMPLETE) and _matches(run, components):
            return run
    return None
