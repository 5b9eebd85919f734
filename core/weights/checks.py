"""Phase 2 (verification) and the shortlist, decided from weightgate.lock, the trust tables and
cached metadata; plus turning a verification run into evidence.

Hash verification itself is measured (by `weightgate weights verify` or the download job, which hashes
while downloading) and recorded as evidence tied to the model and the files' size and mtime, so
touching a weight file turns it stale without re-hashing at every status.
"""

from __future__ import annotations

from pathlib import Path

from weightgate.core.engine.check import CheckContext, CheckResult
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import Evidence, record_result
from weightgate.core.engine.lock import ModelLock, read_lock, snapshot_dir
from weightgate.core.engine.workspace import Workspace
from weightgate.core.weights.gguf_format import validate_gguf
from weightgate.core.weights.licenses import check_licence
from weightgate.core.weights.pickle_policy import (
    TWIN_INDEX,
    is_trusted,
    is_twin_shard,
    pickle_key,
    remote_code_trust,
    scan_problem,
    twin_name,
    twin_source_sha256,
)
from weightgate.core.weights.picklescan import is_pickle_path, scan_file_cached
from weightgate.core.weights.safetensors_format import validate_safetensors
from weightgate.core.weights.shard_index import check_index, is_index
from weightgate.core.weights.sources import weight_files

FETCH_HINT = "choose a model and run `weightgate weights fetch` (it downloads, verifies and writes the lock)"


def _lock(ctx: CheckContext) -> ModelLock | CheckResult:
    cached = ctx.cache.get("lock", ...)
    if cached is ...:
        try:
            cached = read_lock(ctx.ws)
        except InputError as exc:
            cached = CheckResult("fail", str(exc))
        ctx.cache["lock"] = cached
    if cached is None:
        return CheckResult("todo", FETCH_HINT)
    return cached


def check_source(ctx: CheckContext) -> CheckResult:
    lock = _lock(ctx)
    if isinstance(lock, CheckResult):
        return lock
    values = {"kind": lock.kind, "source": lock.source, "revision": lock.revision, "commit": lock.commit}
    if lock.kind == "hub":
        if len(lock.commit) != 40:
            return CheckResult("fail", f"{lock.source}: no pinned 40-hex commit in the lock", values)
        asked = f"@{lock.revision}" if lock.revision and lock.revision != lock.commit else ""
        return CheckResult("pass", f"{lock.source}{asked} pinned at {lock.commit[:12]}", values)
    provenance = f" ({lock.provenance})" if getattr(lock, "provenance", "") else ""
    return CheckResult("pass", f"{lock.kind} source {lock.source}{provenance}", values)


def _pickle_files(lock: ModelLock) -> list:
    return [entry for entry in lock.files if is_pickle_path(entry.path)]


def check_safetensors(ctx: CheckContext) -> CheckResult:
    """Are the weights later phases load in a format that cannot run code?

    They load with use_safetensors=True (or a GGUF), so trusting a pickle does not make a
    pickle-only model pass: it passes once every locked pickle has its safetensors twin in the
    lock, converted from exactly the locked (and trusted) bytes (`weightgate weights convert`)."""
    lock = _lock(ctx)
    if isinstance(lock, CheckResult):
        return lock

    paths = [entry.path for entry in lock.files]
    # What loads sits at the snapshot's root, or under load_dir (a GGUF's converted model).
    prefix = f"{lock.load_dir}/" if lock.load_dir else ""
    loaded = [path[len(prefix):] for path in paths if path.startswith(prefix)]
    weights = ([prefix + path for path in weight_files(loaded)]
               + sorted(p for p in paths if p.count("/") <= 1 and p.lower().endswith(".gguf")))
    pickles = _pickle_files(lock)
    values = {"weight_files": len(weights), "safe_format": len(weights),
              "pickle": sorted(entry.path for entry in pickles)}
    if pickles:
        twins, problems = _twin_problems(ctx, lock, pickles, set(weights))
        values["twins"] = twins
        if problems:
            return CheckResult("fail", "; ".join(problems), values)
        shown = ", ".join(f"{p} -> {t}" for p, t in sorted(twins.items()))
        return CheckResult("pass", f"pickle weights converted from their trusted bytes: {shown}; later phases "
                           "load the safetensors", values)
    if not weights:
        return CheckResult("fail", "the lock lists no weight files", values)
    return CheckResult("pass", f"{len(weights)} weight file(s), all safetensors/GGUF", values)


def _twin_problems(ctx: CheckContext, lock: ModelLock, pickles: list, loaded: set[str]) -> tuple[dict, list[str]]:
    """({pickle: twin} of the good ones, problems): each locked pickle needs a locked safetensors
    twin whose header names the pickle's locked sha256, and the twins must be what loads."""

    root = snapshot_dir(ctx.ws, lock)
    twins, problems = {}, []
    for entry in pickles:
        twin = twin_name(entry.path)
        convert = f"`weightgate weights convert {entry.path}`"
        problem = scan_problem(root / entry.path)
        if problem:
            # Never offer trust for a file the scan refuses: it would not load anyway.
            problems.append(f"{entry.path} is pickle and {problem}: weightgate will not load it, trusted or "
                            "not; ask the publisher for safetensors")
            continue
        if not _pickle_trusted(ctx, lock, entry.path):
            key = pickle_key(ctx.ws, root / entry.path)
            problems.append(f"{entry.path} is pickle (loading it can run code) and not trusted at its sha256; its "
                            f"scan is clean: review it, `weightgate weights trust pickle {key} --sha256 "
                            f"{entry.sha256} --note ...`, then {convert}")
            continue
        if lock.file(twin) is None:
            problems.append(f"{entry.path} is trusted but still pickle: later phases load only safetensors; "
                            f"{convert} writes and locks its twin {twin}")
            continue
        try:
            made_from = twin_source_sha256(root / twin)
        except InputError as exc:
            problems.append(f"{twin} (the twin of {entry.path}) cannot be read: {exc.message}")
            continue
        if made_from != entry.sha256:
            problems.append(f"{twin} was not converted from the locked bytes of {entry.path} "
                            f"({'it names no source' if made_from is None else 'source sha256 ' + made_from[:12]}, "
                            f"locked {entry.sha256[:12]}): {convert} --overwrite")
            continue
        if twin not in loaded:
            problems.append(f"{twin} is not among the weights that load ({', '.join(sorted(loaded)) or 'none'})")
            continue
        twins[entry.path] = twin
    if not problems and any(is_twin_shard(t) for t in twins.values()):
        folder = {str(Path(t).parent) for t in twins.values()}
        index = [f"{d}/{TWIN_INDEX}" if d != "." else TWIN_INDEX for d in sorted(folder)]
        absent = [i for i in index if lock.file(i) is None]
        if absent:
            problems.append(f"sharded twins without {', '.join(absent)} in the lock: convert every shard "
                            "(the index is written with the last one)")
    return twins, problems


def _pickle_trusted(ctx: CheckContext, lock: ModelLock, path: str) -> bool:
    entry = lock.file(path)
    full = snapshot_dir(ctx.ws, lock) / path
    return entry is not None and is_trusted(ctx.ws, full, entry.sha256)


def check_pickle(ctx: CheckContext) -> CheckResult:
    lock = _lock(ctx)
    if isinstance(lock, CheckResult):
        return lock
    pickles = _pickle_files(lock)
    if not pickles:
        return CheckResult("pass", "no pickle files in the lock", {"pickle": 0})

    root = snapshot_dir(ctx.ws, lock)
    problems, values = [], {"pickle": len(pickles)}
    for entry in pickles:
        if not _pickle_trusted(ctx, lock, entry.path):
            problem = scan_problem(root / entry.path)
            problems.append(f"{entry.path} is not trusted" + (f", and {problem}" if problem else ""))
            continue
        try:
            result = scan_file_cached(root / entry.path)
        except InputError as exc:
            problems.append(f"{entry.path}: {exc.message}")
            continue
        if not result.safe:
            problems.append(f"{entry.path}: scan found {len(result.findings)} unsafe import(s)")
    if problems:
        return CheckResult("fail", "; ".join(problems), values)
    return CheckResult("pass", f"{len(pickles)} pickle file(s), each trusted at its sha256 and scanned clean",
                       values)


def check_remote_code(ctx: CheckContext) -> CheckResult:
    lock = _lock(ctx)
    if isinstance(lock, CheckResult):
        return lock
    if not lock.remote_code:
        return CheckResult("pass", "no remote code (no auto_map, no .py files)", {"remote_code": False})
    values = {"remote_code": True, "commit": lock.commit}
    if lock.kind != "hub":
        return CheckResult("fail", local_remote_code_detail(lock), values)

    trust = remote_code_trust(ctx.ws, lock.source)
    if trust is None:
        return CheckResult("fail", f"{lock.source} needs trust_remote_code; trust it at the pinned commit: "
                           f"weightgate weights trust remote-code {lock.source}@{lock.commit} --note \"...\"", values)
    if trust.commit != lock.commit:
        return CheckResult("fail", f"remote code trusted at {trust.commit[:12]}, but the lock is at "
                           f"{lock.commit[:12]}: review the new code and trust it again", values)
    return CheckResult("pass", f"remote code trusted at the pinned commit {lock.commit[:12]}: {trust.note}",
                       values)


def local_remote_code_detail(lock: ModelLock) -> str:
    """Why a local source with custom code fails, and the two ways out. Remote code is trusted
    per hub repo at a 40-hex commit; a local directory has no commit, and its files can change
    under the same path at any time, so no trust can be pinned to it."""
    return (f"{lock.source} carries custom code (config.json auto_map or *.py files), and code in a local "
            f"{'file' if lock.kind == 'gguf' else 'directory'} cannot be trusted at a commit (it has none): "
            "remove the auto_map entries and the *.py files from it and fetch it again, "
            "or use the model from a hub repo at a pinned commit (org/name@<40-hex commit>) "
            "and trust that with `weightgate weights trust remote-code org/name@<commit>`")


def check_license(ctx: CheckContext) -> CheckResult:
    lock = _lock(ctx)
    if isinstance(lock, CheckResult):
        return lock

    use = ctx.requirements().get("intended_use")
    decisions = ctx.decisions()
    reviewed = decisions.get("license") if isinstance(decisions.get("license"), dict) else None
    verdict = check_licence(lock.license, use if isinstance(use, dict) else {}, reviewed)
    return CheckResult(verdict.status, verdict.detail, {"license": lock.license, "category": verdict.category})


# ------------------------------------------------------------------ shortlist (phase 1)


# ------------------------------------------------------------------ evidence from a verification

def record_verification(ws: Workspace, report) -> list[Evidence]:
    """Turn a core.weights.verify.VerifyReport into evidence for verify.checksum and verify.headers."""
    checksum = report.checksum_evidence()
    headers = report.headers_evidence()
    failed = "; ".join([*([checksum["lock_fault"]] if checksum.get("lock_fault") else []),
                        *(f"{path} ({status})" for path, status in checksum["failed"].items())]) or "the lock lists no files"
    return [
        record_result(ws, "verify.checksum", "pass" if report.checksum_ok else "fail", checksum,
                      kind="job", note=(f"{checksum['files']} files match the lock"
                                        if report.checksum_ok else f"mismatch: {failed}")),
        record_result(ws, "verify.headers", "pass" if report.headers_ok else "fail", headers,
                      kind="job", note=(f"{headers['checked']} weight headers valid"
                                        if report.headers_ok else headers_note(headers))),
    ]


def headers_note(headers: dict) -> str:
    """Why verify.headers fails, never an empty list: each fault with its message, or that there
    is no safetensors / GGUF weight to check at all."""
    faults = headers.get("faults") or {}
    messages = headers.get("messages") or {}
    if not faults:
        return ("no safetensors or GGUF weights in the lock: nothing loadable to check "
                "(a pickle-only model: convert it, weightgate weights convert FILE)")
    return "bad headers: " + "; ".join(f"{path} ({fault}" + (f": {messages[path]}" if messages.get(path) else "")
                                      + ")" for path, fault in faults.items())


def validate_weight_headers(root: Path, paths) -> tuple[dict[str, str], dict[str, str]]:
    """Header-only checks of the weight files and sharded indexes (fast: no tensor data is read):
    (path -> fault or 'ok', path -> the fault's message)."""

    paths = list(paths)
    results, messages = {}, {}
    for path in paths:
        try:
            if is_index(path):
                faults = check_index(root, path, set(paths))
                if faults:
                    results[path], messages[path] = faults[0].fault, "; ".join(f.message for f in faults)
                    continue
            elif path.endswith(".safetensors"):
                validate_safetensors(root / path)
            elif path.endswith(".gguf"):
                validate_gguf(root / path)
            else:
                continue
            results[path] = "ok"
        except InputError as exc:
            results[path] = getattr(exc, "fault", None) or exc.message
            messages[path] = exc.message
    return results, messages


def record_lock_evidence(ws: Workspace, lock: ModelLock, how: str) -> dict:
    """Evidence right after a lock is written from freshly hashed bytes (a verified download
    hashes while the bytes arrive; a local source is hashed once). Headers are validated here
    (no tensor data is read)."""

    root = snapshot_dir(ws, lock)
    headers, messages = validate_weight_headers(root, [entry.path for entry in lock.files])
    faults = {path: fault for path, fault in headers.items() if fault != "ok"}
    published = sum(1 for entry in lock.files if entry.hash_source == "published")
    against = (f"{published} against published hashes" if published
               else "nothing published to compare with: hashes computed locally")
    if lock.provenance:
        against += f" ({lock.provenance})"
    record_result(ws, "verify.checksum", "pass",
                  {"ok": True, "files": len(lock.files), "published": published, "failed": {}, "how": how},
                  note=f"{len(lock.files)} files {how}; {against}")
    values = {"ok": bool(headers) and not faults, "weight_files": len(headers), "checked": len(headers),
              "faults": faults, "messages": messages}
    record_result(ws, "verify.headers", "pass" if values["ok"] else "fail", values,
                  note=f"{len(headers)} weight headers valid" if values["ok"] else headers_note(values))
    return {"checksum": "pass", "headers": "pass" if values["ok"] else "fail"}


def record_download(ws: Workspace, lock: ModelLock) -> dict:
    return record_lock_evidence(ws, lock, "hashed while downloading")


def record_local_lock(ws: Workspace, lock: ModelLock) -> dict:
    return record_lock_evidence(ws, lock, "hashed at lock time")


LIVE_CHECKS = {
    "verify.source": check_source,
    "verify.safetensors": check_safetensors,
    "verify.pickle": check_pickle,
    "verify.remote_code": check_remote_code,
    "verify.license": check_license,
}
