"""Model licences against the intended use declared in [requirements.intended_use].

The hub's licence ids (the model card's `license:` field) are classified by what they allow.
A licence we do not know, or "other", is never guessed: the person reads it and records their
reading in weightgate.toml under [decisions.license], which the check then uses.
"""

from __future__ import annotations

from dataclasses import dataclass

PERMISSIVE = {
    "apache-2.0", "mit", "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "isc",
    "unlicense", "cc0-1.0", "cc-by-4.0", "cc-by-3.0", "cc-by-2.0", "cc-by-sa-4.0", "cc-by-sa-3.0",
    "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "openrail++", "mpl-2.0",
    "lgpl-3.0", "lgpl-2.1", "gpl-3.0", "gpl-2.0", "agpl-3.0", "afl-3.0", "artistic-2.0",
    "bsl-1.0", "ecl-2.0", "epl-2.0", "eupl-1.1", "postgresql", "ofl-1.1", "ncsa", "zlib", "wtfpl",
    "pddl", "odc-by", "odbl", "c-uda", "cdla-permissive-2.0", "cdla-permissive-1.0",
}
# Commercial use allowed, with conditions worth reading (user caps, attribution, AUPs).
CONDITIONAL = {
    "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma", "bigcode-openrail-m",
    "deepfloyd-if-license", "apple-ascl", "intel-research", "lgpl-lr", "h-research",
}
NON_COMMERCIAL = {
    "cc-by-nc-4.0", "cc-by-nc-3.0", "cc-by-nc-2.0", "cc-by-nc-sa-4.0", "cc-by-nc-sa-3.0",
    "cc-by-nc-sa-2.0", "cc-by-nc-nd-4.0", "cc-by-nc-nd-3.0", "fair-noncommercial-research-license",
    "llama-research", "research-only", "academic-only", "apple-amlr",
}
# No-derivatives licences: the unmodified model may be used and shared (commercially too, unless
# it is also NC), but adapted material may not be shared: a fine-tune or a merge of the model is
# adapted material. Quantizing is a format change the licence permits (CC 4.0 section 2.a.4).
NO_DERIVATIVES = {"cc-by-nd-4.0", "cc-by-nd-3.0", "cc-by-nd-2.0", "cc-by-nc-nd-4.0", "cc-by-nc-nd-3.0"}
# Commercial use allowed, no derivatives shared (the NC-ND ones are in NON_COMMERCIAL).
NO_DERIVATIVES_COMMERCIAL = {"cc-by-nd-4.0", "cc-by-nd-3.0", "cc-by-nd-2.0"}


@dataclass
class LicenceVerdict:
    status: str          # pass | fail | todo
    detail: str
    licence: str
    category: str        # permissive | conditional | no-derivatives | non-commercial | unknown | missing


def classify(licence: str) -> str:
    key = (licence or "").strip().lower()
    if not key:
        return "missing"
    if key in PERMISSIVE:
        return "permissive"
    if key in CONDITIONAL:
        return "conditional"
    if key in NO_DERIVATIVES_COMMERCIAL:
        return "no-derivatives"
    if key in NON_COMMERCIAL or "-nc-" in key or key.endswith("-nc") or "noncommercial" in key \
            or "research" in key:
        return "non-commercial"
    return "unknown"


def check_licence(licence: str, intended_use: dict, reviewed: dict | None = None, *,
                  derivative: bool = False) -> LicenceVerdict:
    """Is `licence` compatible with the intended use? `reviewed` is [decisions.license]:
    {id, allows_commercial, allows_distribution, allows_derivatives (optional), note} written by
    a person who read it.

    `derivative`: the thing judged is adapted from the model (a fine-tuned adapter, a merge),
    not the model as published. Phase 2 judges the base as published (derivative=False); the
    ship check judges what is shipped (derivative for a merged or adapter release). A
    no-derivatives licence passes the unmodified model, commercial use included, and fails a
    shipped derivative: shipping puts the adapted model into service, which is sharing it."""
    category = classify(licence)
    commercial = bool(intended_use.get("commercial", True))
    distribution = bool(intended_use.get("distribution", False))
    key = (licence or "").strip().lower()
    if reviewed and str(reviewed.get("id", "")).strip().lower() == key and reviewed.get("note"):
        allowed_c = bool(reviewed.get("allows_commercial", False))
        allowed_d = bool(reviewed.get("allows_distribution", False))
        problems = []
        if commercial and not allowed_c:
            problems.append("your reading says it does not allow commercial use")
        if distribution and not allowed_d:
            problems.append("your reading says it does not allow distribution")
        if derivative and reviewed.get("allows_derivatives") is False:
            problems.append("your reading says it does not allow derivatives (a fine-tune or merge is one)")
        if problems:
            return LicenceVerdict("fail", f"{licence}: " + "; ".join(problems), licence, category)
        return LicenceVerdict("pass", f"{licence}: reviewed: {reviewed['note']}", licence, category)
    if category == "missing":
        return LicenceVerdict("fail", "no licence found in the model card; do not use weights without one",
                              licence, category)
    if category == "unknown":
        return LicenceVerdict("fail", f"licence {licence!r} is not one weightgate knows: read it and record "
                              "your reading in [decisions.license] (id, allows_commercial, "
                              "allows_distribution, note)", licence, category)
    if category == "non-commercial" and commercial:
        return LicenceVerdict("fail", f"{licence} does not allow commercial use, and the intended use is "
                              "commercial", licence, category)
    if key in NO_DERIVATIVES:
        if derivative:
            return LicenceVerdict("fail", f"{licence} allows no derivatives: a fine-tuned or merged version of "
                                  "the model may not be shipped; ship the unmodified base, or record your "
                                  "reading in [decisions.license] (allows_derivatives, note)", licence, category)
        use = "commercial" if commercial else "non-commercial"
        shared = ", distributed unmodified" if distribution else ""
        return LicenceVerdict("pass", f"{licence} allows {use} use of the unmodified model{shared}; no "
                              "derivatives: a fine-tune or merge of it may not be shipped", licence, category)
    if category == "conditional":
        return LicenceVerdict("pass", f"{licence}: commercial use allowed with conditions (user caps, "
                              "attribution, acceptable-use policy); read them before shipping",
                              licence, category)
    use = "commercial" if commercial else "non-commercial"
    return LicenceVerdict("pass", f"{licence} ({category}) allows {use} use", licence, category)
