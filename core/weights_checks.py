"""Phase 2 (verification) and the shortlist, decided from weightgate.lock, the trust tables and
cached metadata; plus turning a verification run into evidence.

Hash verification itself is measured (by `weightgate verify` or the download job, which hashes
while downloading) and recorded as evidence tied to the model and the files' size and mtime, so
touching a weight file turns it stale without re-hashing at every status.
"""

from __future__ import annotations

from pathlib import Path

from core.checks import CheckContext, CheckResult
from core.errors import InputError
from core.evidence import Evidence, record_result
from core.lock import ModelLock, read_lock
from core.workspace import Workspace

FETCH_HINT = "choose a model and run `weightgate fetch` (it downloads, verifies and writes the lock)"


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
    from core.picklescan import is_pickle_path

    return [entry for entry in lock.files if is_pickle_path(entry.path)]


def check_safetensors(ctx: CheckContext) -> CheckResult:
    lock = _lock(ctx)
    if isinstance(lock, CheckResult):
        return lock
    from core.sources import weight_files

    weights = weight_files([entry.path for entry in lock.files])
    pickles = {entry.path for entry in _pickle_files(lock)}
    safe = [path for path in weights if path.endswith((".safetensors", ".gguf"))]
    values = {"weight_files": len(weights), "safe_format": len(safe), "pickle": sorted(pickles)}
    if not weights:
        return CheckResult("fail", "the lock lists no weight files", values)
    unsafe_weights = [path for path in weights if path in pickles]
    if unsafe_weights:
        untrusted = [path for path in unsafe_weights if not _pickle_trusted(ctx, lock, path)]
        if untrusted:
            return CheckResult("fail", f"pickle weights: {', '.join(untrusted)}; convert them to safetensors "
                               "after trusting them (`weightgate trust pickle`)", values)
        return CheckResult("pass", f"pickle weights trusted explicitly: {', '.join(unsafe_weights)}", values)
    return CheckResult("pass", f"{len(safe)} weight file(s), all safetensors/GGUF", values)


def _pickle_trusted(ctx: CheckContext, lock: ModelLock, path: str) -> bool:
    from core.pickle_policy import is_trusted
    from core.verify import snapshot_dir

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
    from core.picklescan import scan_file
    from core.verify import snapshot_dir

    root = snapshot_dir(ctx.ws, lock)
    problems, values = [], {"pickle": len(pickles)}
    for entry in pickles:
        if not _pickle_trusted(ctx, lock, entry.path):
            problems.append(f"{entry.path} is not trusted")
            continue
        try:
            result = scan_file(root / entry.path)
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
    from core.pickle_policy import remote_code_trust

    trust = remote_code_trust(ctx.ws, lock.source)
    values = {"remote_code": True, "commit": lock.commit}
    if trust is None:
        return CheckResult("fail", f"{lock.source} needs trust_remote_code; trust it at the pinned commit: "
                           f"weightgate trust remote-code {lock.source}@{lock.commit} --note \"...\"", values)
    if trust.commit != lock.commit:
        return CheckResult("fail", f"remote code trusted at {trust.commit[:12]}, but the lock is at "
                           f"{lock.commit[:12]}: review the new code and trust it again", values)
    return CheckResult("pass", f"remote code trusted at the pinned commit {lock.commit[:12]}: {trust.note}",
                       values)


def check_license(ctx: CheckContext) -> CheckResult:
    lock = _lock(ctx)
    if isinstance(lock, CheckResult):
        return lock
    from core.licenses import check_licence

    use = ctx.requirements().get("intended_use")
    decisions = ctx.config.get("decisions") if isinstance(ctx.config.get("decisions"), dict) else {}
    reviewed = decisions.get("license") if isinstance(decisions.get("license"), dict) else None
    verdict = check_licence(lock.license, use if isinstance(use, dict) else {}, reviewed)
    return CheckResult(verdict.status, verdict.detail, {"license": lock.license, "category": verdict.category})


# ------------------------------------------------------------------ shortlist (phase 1)

def check_shortlist(ctx: CheckContext) -> CheckResult:
    from core.metadata_cache import candidate_specs, load_metadata

    specs = candidate_specs(ctx.config)
    if not specs:
        return CheckResult("todo", "add candidates, smallest first: weightgate add ORG/NAME (or a local dir)")
    sized, missing = [], []
    for spec in specs:
        meta = load_metadata(ctx.ws, spec)
        if meta is None or not meta.get("parameter_count"):
            missing.append(spec)
        else:
            sized.append((spec, int(meta["parameter_count"]), meta.get("size_class", "?")))
    values = {"candidates": [{"source": s, "parameters": p, "size_class": c} for s, p, c in sized]}
    if missing:
        return CheckResult("todo", "no metadata yet for " + ", ".join(missing) +
                           ": run `weightgate inspect SOURCE --save` (reads headers, downloads no weights)",
                           values)
    order = [p for _, p, _ in sized]
    if order != sorted(order):
        smallest = min(sized, key=lambda row: row[1])
        return CheckResult("fail", f"not smallest first: {smallest[0]} ({_human(smallest[1])}) should come "
                           f"before {sized[0][0]} ({_human(sized[0][1])})", values)
    detail = ", ".join(f"{s} ({_human(p)})" for s, p, _ in sized)
    if sized[0][1] >= 7_000_000_000:
        detail += ("; warning: the smallest candidate has "
                   f"{_human(sized[0][1])} parameters: shortlist a smaller one unless you know it cannot work")
    return CheckResult("pass", detail, values)


def _human(parameters: int) -> str:
    if parameters >= 1e9:
        return f"{parameters / 1e9:.1f}B"
    if parameters >= 1e6:
        return f"{parameters / 1e6:.0f}M"
    return f"{parameters / 1e3:.0f}K"


# ------------------------------------------------------------------ evidence from a verification

def record_verification(ws: Workspace, report) -> list[Evidence]:
    """Turn a core.verify.VerifyReport into evidence for verify.checksum and verify.headers."""
    checksum = report.checksum_evidence()
    headers = report.headers_evidence()
    failed = ", ".join(f"{path} ({status})" for path, status in checksum["failed"].items())
    faults = ", ".join(f"{path} ({fault})" for path, fault in headers["faults"].items())
    return [
        record_result(ws, "verify.checksum", "pass" if report.checksum_ok else "fail", checksum,
                      kind="job", note=(f"{checksum['files']} files match the lock"
                                        if report.checksum_ok else f"mismatch: {failed}")),
        record_result(ws, "verify.headers", "pass" if report.headers_ok else "fail", headers,
                      kind="job", note=(f"{headers['checked']} weight headers valid"
                                        if report.headers_ok else f"bad headers: {faults}")),
    ]


def validate_weight_headers(root: Path, paths) -> dict[str, str]:
    """Header-only checks of the weight files (fast: no tensor data is read). path -> fault or 'ok'."""
    from core.gguf_check import validate_gguf
    from core.safetensors_check import validate_safetensors

    results = {}
    for path in paths:
        try:
            if path.endswith(".safetensors"):
                validate_safetensors(root / path)
            elif path.endswith(".gguf"):
                validate_gguf(root / path)
            else:
                continue
            results[path] = "ok"
        except InputError as exc:
            results[path] = getattr(exc, "fault", None) or exc.message
    return results


def record_lock_evidence(ws: Workspace, lock: ModelLock, how: str) -> dict:
    """Evidence right after a lock is written from freshly hashed bytes (a verified download
    hashes while the bytes arrive; a local source is hashed once). Headers are validated here
    (no tensor data is read)."""
    from core.verify import snapshot_dir

    root = snapshot_dir(ws, lock)
    headers = validate_weight_headers(root, [entry.path for entry in lock.files])
    faults = {path: fault for path, fault in headers.items() if fault != "ok"}
    published = sum(1 for entry in lock.files if entry.hash_source == "published")
    against = (f"{published} against published hashes" if published
               else "nothing published to compare with: hashes computed locally")
    if lock.provenance:
        against += f" ({lock.provenance})"
    record_result(ws, "verify.checksum", "pass",
                  {"ok": True, "files": len(lock.files), "published": published, "failed": {}, "how": how},
                  note=f"{len(lock.files)} files {how}; {against}")
    record_result(ws, "verify.headers", "fail" if faults else "pass",
                  {"ok": not faults, "weight_files": len(headers), "checked": len(headers), "faults": faults},
                  note=(f"{len(headers)} weight headers valid" if not faults
                        else "bad headers: " + ", ".join(f"{p} ({f})" for p, f in faults.items())))
    return {"checksum": "pass", "headers": "fail" if faults else "pass"}


def record_download(ws: Workspace, lock: ModelLock) -> dict:
    return record_lock_evidence(ws, lock, "hashed while downloading")


def record_local_lock(ws: Workspace, lock: ModelLock) -> dict:
    return record_lock_evidence(ws, lock, "hashed at lock time")


def restore_hint(lock: ModelLock | None) -> str:
    """What to do about weights that no longer match the lock."""
    if lock is not None and lock.kind == "hub":
        return "re-fetch the model (`weightgate fetch`); never load bytes you cannot verify"
    return ("restore the original files from where they came from: re-locking a local source "
            "(`weightgate fetch DIR`) would bless the changed bytes")


def verified_snapshot(ws: Workspace, *, progress=None) -> Path:
    """The locked weights' directory, safe to load: called by every later phase before it loads
    weights. Files whose size or mtime differ from the lock are re-hashed first (the rest are
    trusted from their last verification); any mismatch raises, naming the files."""
    from core.verify import snapshot_dir, verify_lock

    lock = read_lock(ws)
    if lock is None:
        raise InputError("no weights locked in this workspace", path=ws.lock_path, hint=FETCH_HINT)
    report = verify_lock(ws, only_changed=True, progress=progress)
    if report.lock_updated or not report.ok:
        record_verification(ws, report)
    if not report.ok:
        bad = ", ".join(f"{r.path} ({r.status})" for r in report.failed()) or "a weight header is invalid"
        raise InputError(f"the locked weights do not match weightgate.lock: {bad}", path=ws.lock_path,
                         hint=restore_hint(lock))
    return snapshot_dir(ws, lock)
