"""`weightgate release audit VERSION`: does what a version's manifest claims still hold?

Re-derived from the shipped files and the workspace's evidence log, never from the manifest's
word alone:

    files       every file against SHA256SUMS (the manifest, its checklist and the card included)
    checklist   each item's evidence record (named by its digest) is still in the log, unedited;
                no attestation or waiver it holds by was revoked, replaced or re-noted since
    gates       the [gates] table agrees with the snapshot (open only if phases 1-5 passed)
    evals       each eval run named exists with the same identity, outputs digest and score, and
                the shipped copy of its results names the same identity
    adapter     the adapter directory it was made from still has the recorded digest
    base        an adapter version's base files still match their recorded sizes and hashes

A check that cannot be made (a run directory deleted, the adapter's directory gone) is listed as
unchecked, with why; a finding is a difference. Exit 1 on any finding. Torch-free.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.evidence import Evidence, read_evidence
from weightgate.core.engine.workspace import Workspace
from weightgate.core.evaluation.plan import adapter_files_digest, resolve_adapter
from weightgate.core.evaluation.runs import RUN_FILE, read_run
from weightgate.core.registry.manifest import read_manifest
from weightgate.core.registry.store import VersionRef
from weightgate.core.registry.verify import verify_version
from weightgate.core.release.load import ReleaseCorrupt, verify_base

PERSON_KINDS = ("attest", "waive", "revoke")


@dataclass
class Finding:
    area: str        # files | checklist | gates | evals | adapter | base
    subject: str     # the file, item or run concerned
    detail: str


@dataclass
class AuditReport:
    label: str
    stage: str = ""
    promotion: dict | None = None
    findings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        if self.holds:
            return f"{self.label}: the manifest holds ({len(self.checked)} checks" + (
                f", {len(self.unchecked)} could not be made" if self.unchecked else "") + ")"
        return f"{self.label}: {len(self.findings)} difference{'s' if len(self.findings) != 1 else ''} from its manifest"

    def to_dict(self) -> dict:
        return {"version": self.label, "stage": self.stage, "holds": self.holds, "summary": self.summary(),
                "findings": [asdict(f) for f in self.findings], "checked": self.checked,
                "unchecked": self.unchecked}


def audit(ws: Workspace, ref: VersionRef) -> AuditReport:
    report = AuditReport(ref.label)
    files = verify_version(ref)
    for path, status in files.problems().items():
        report.findings.append(Finding("files", path, f"{status} (against SHA256SUMS)"))
    report.checked.append(f"files: {len(files.files)} against SHA256SUMS")
    manifest = read_manifest(ref.path)
    checklist = manifest.get("checklist")
    if not isinstance(checklist, dict) or not isinstance(checklist.get("items"), list):
        report.findings.append(Finding("checklist", "manifest.toml", "no [checklist]: shipped before weightgate "
                                                                     "recorded one; ship it again"))
    else:
        report.stage = str(checklist.get("stage", ""))
        report.promotion = manifest.get("promotion") if isinstance(manifest.get("promotion"), dict) else None
        _audit_checklist(ws, checklist, report)
        _audit_gates(manifest.get("gates"), checklist, report)
    _audit_evals(ws, ref, manifest, report)
    _audit_adapter(ws, manifest, report)
    if manifest.get("release", {}).get("relation") == "adapter":
        try:
            verify_base(manifest, ws.root)
            report.checked.append(f"base: {len(manifest['base'].get('files') or [])} files of {manifest['base']['repo']}")
        except ReleaseCorrupt as exc:
            report.findings.append(Finding("base", str(manifest["base"].get("repo")), exc.message))
    return report


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def _audit_checklist(ws: Workspace, checklist: dict, report: AuditReport) -> None:
    records = read_evidence(ws)
    by_digest = {record.digest: record for record in records}
    by_item: dict[str, list[Evidence]] = {}
    for record in records:
        by_item.setdefault(record.item, []).append(record)
    named = 0
    for entry in checklist["items"]:
        if not isinstance(entry, dict) or not entry.get("evidence"):
            continue
        named += 1
        item, digest = str(entry.get("id")), str(entry["evidence"])
        record = by_digest.get(digest)
        if record is None:
            report.findings.append(Finding("checklist", item, f"the {entry.get('kind', '')} record it was decided on "
                                           f"({digest[:19]}…) is no longer in the evidence log: edited or removed "
                                           "since the snapshot"))
            continue
        if entry.get("kind") not in ("attest", "waive"):
            continue
        for later in by_item.get(item, []):
            if later.time <= record.time or later.kind not in PERSON_KINDS:
                continue
            if later.kind == "revoke":
                what = f"{'waiver' if record.kind == 'waive' else 'attestation'} revoked"
            elif later.kind == record.kind and later.note == record.note:
                continue
            else:
                what = f"{'waived' if later.kind == 'waive' else 'attested'} again: \"{later.note}\""
            report.findings.append(Finding("checklist", item, f"{what} by {later.by} at {_when(later.time)} "
                                                              f"(the snapshot has: \"{record.note}\")"))
            break
    report.checked.append(f"checklist: {len(checklist['items'])} items, {named} evidence records in the log")


def _audit_gates(gates, checklist: dict, report: AuditReport) -> None:
    if not isinstance(gates, dict):
        report.findings.append(Finding("gates", "manifest.toml", "no [gates]: shipped before weightgate recorded them"))
        return
    states = {p.get("number"): p.get("state") for p in checklist.get("phases") or [] if isinstance(p, dict)}
    if report.stage == "ship":
        earlier_passed = all(states.get(n) in ("passed", "not-needed") for n in range(1, 6))
        if bool(gates.get("open")) and not earlier_passed:
            report.findings.append(Finding("gates", "manifest.toml", "[gates] says open but the checklist snapshot "
                                                                     "has phases 1-5 not passing"))
    else:
        # [gates] is about the ship; the snapshot is of the promotion, whose own override says
        # whether phase 6 had to pass.
        promotion = report.promotion
        if promotion is not None and "override" not in promotion and states.get(6) != "passed":
            report.findings.append(Finding("gates", "manifest.toml", "promoted without an override, but the "
                                                                     "checklist at promotion has phase 6 "
                                                                     f"{states.get(6)}"))
    report.checked.append("gates: " + ("open" if gates.get("open") else
                                       f"overridden ({', '.join(gates.get('held_by') or [])})"))


def _audit_evals(ws: Workspace, ref: VersionRef, manifest: dict, report: AuditReport) -> None:
    for block in manifest.get("evals") or []:
        run_id, set_name = str(block.get("run")), str(block.get("set"))
        shipped = ref.path / str(block.get("results") or f"eval/{set_name}") / RUN_FILE
        try:
            shipped_identity = json.loads(shipped.read_text(encoding="utf-8")).get("identity", {}).get("digest")
        except (OSError, ValueError, AttributeError):
            shipped_identity = None
        if shipped_identity != block.get("identity"):
            report.findings.append(Finding("evals", f"{set_name} {run_id}", f"the shipped results ({shipped.name}) "
                                           f"name identity {str(shipped_identity)[:19]}, the manifest "
                                           f"{str(block.get('identity'))[:19]}"))
        try:
            run = read_run(ws, run_id)
        except InputError as exc:
            report.unchecked.append(f"eval run {run_id}: {exc.message}")
            continue
        differs = []
        if run.digest != block.get("identity"):
            differs.append(f"identity {run.digest[:19]} (manifest {str(block.get('identity'))[:19]})")
        if run.identity.get("outputs", "") != block.get("outputs", ""):
            differs.append("outputs digest")
        if run.summary.get("score") != block.get("score"):
            differs.append(f"score {run.summary.get('score')} (manifest {block.get('score')})")
        if differs:
            report.findings.append(Finding("evals", f"{set_name} {run_id}", "the run differs: " + ", ".join(differs)))
        else:
            report.checked.append(f"eval {set_name}: run {run_id} has the identity, outputs and score shipped")


def _audit_adapter(ws: Workspace, manifest: dict, report: AuditReport) -> None:
    adapter = manifest.get("adapter") or {}
    if not adapter.get("present"):
        return
    try:
        path = resolve_adapter(ws, adapter.get("decision"))
    except InputError:
        path = None
    if path is None:
        report.unchecked.append(f"adapter: {adapter.get('decision')} is gone, its digest cannot be re-derived")
        return
    digest = adapter_files_digest(path)
    if digest != adapter.get("digest"):
        report.findings.append(Finding("adapter", str(path), f"digest {digest[:19]}… differs from the manifest's "
                                                             f"{str(adapter.get('digest'))[:19]}…"))
    else:
        report.checked.append(f"adapter: {path.name} digest as shipped")
