"""Phase 6, deployment: putting a version in front of users, only through the gates. Ship (the
merge check, a registry candidate, manifest with its checklist snapshot, model card), promote
(current moves only when the candidate's phase-6 checks pass, or with a recorded override),
audit (does a shipped checklist still hold), the health probe, the canary. The registry itself
and phase 6's checks are core/registry/.
"""
