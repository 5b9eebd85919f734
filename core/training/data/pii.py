"""PII in training text: find it, count it by kind, and scrub it with a placeholder.

Kinds: email, phone, card (13-19 digits passing the Luhn check), iban (mod-97 check), ipv4,
ipv6, ssn (US-style 123-45-6789 with the ranges the SSA never issues excluded). Checksums keep
false positives down: a 16-digit number that fails Luhn is not a card, a string shaped like an
IBAN whose mod-97 remainder is not 1 is not an IBAN. Dates are not phone numbers: a phone needs a
leading +, an area code in parentheses, or a national shape (555-123-4567, 020 7946 0958).

Matching runs kind by kind in PRIORITY order over the text with earlier matches masked, so a
card number is never also counted as a phone number.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

PLACEHOLDERS = {"email": "[EMAIL]", "iban": "[IBAN]", "card": "[CARD]", "ssn": "[SSN]", "ipv6": "[IPV6]",
                "ipv4": "[IPV4]", "phone": "[PHONE]"}
KINDS = tuple(PLACEHOLDERS)

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_SSN = re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_PHONE = re.compile(r"(?<![\w+:.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w-])")
# IBAN lengths by country (the common ones); an unknown country needs only the mod-97 check.
IBAN_LENGTHS = {"AT": 20, "BE": 16, "CH": 21, "CZ": 24, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27,
                "GB": 22, "IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "SE": 24}


@dataclass
class Finding:
    kind: str
    start: int
    end: int
    text: str


def luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact):
        return False
    expected = IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


def _ssn_ok(match: re.Match) -> bool:
    area, group, serial = match.groups()
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def _ipv6_ok(text: str) -> bool:
    if text.count(":") < 2 or ("::" not in text and text.count(":") != 7):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _ipv4_ok(text: str) -> bool:
    return all(int(part) <= 255 and (part == "0" or not part.startswith("0")) for part in text.split("."))


_NATIONAL = re.compile(r"\d{3}[ .-]\d{3}[ .-]\d{4}|0\d{2,4}[ .-]\d{3,4}[ .-]?\d{3,4}")


def _phone_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    if not 7 <= len(digits) <= 15:
        return False
    # International (+) or with an area code in parentheses; otherwise only the two national
    # shapes (555-123-4567, 020 7946 0958), so number lists, years and times are not phones.
    return text.startswith("+") or "(" in text or bool(_NATIONAL.fullmatch(text))


def _card_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


CHECKS = (
    ("email", _EMAIL, lambda m: True),
    ("iban", _IBAN, lambda m: iban_ok(m.group(0))),
    ("card", _CARD, lambda m: _card_ok(m.group(0))),
    ("ssn", _SSN, _ssn_ok),
    ("ipv6", _IPV6, lambda m: _ipv6_ok(m.group(0))),
    ("ipv4", _IPV4, lambda m: _ipv4_ok(m.group(0))),
    ("phone", _PHONE, lambda m: _phone_ok(m.group(0))),
)


def find_pii(text: str) -> list[Finding]:
    """Every PII finding in `text`, in order of position."""
    findings: list[Finding] = []
    masked = text
    for kind, pattern, valid in CHECKS:
        for match in pattern.finditer(masked):
            if valid(match):
                findings.append(Finding(kind, match.start(), match.end(), text[match.start():match.end()]))
        for finding in findings:
            if finding.kind == kind:
                # Same length, so later patterns see the same offsets and skip what is taken.
                masked = masked[:finding.start] + "\0" * (finding.end - finding.start) + masked[finding.end:]
    return sorted(findings, key=lambda f: f.start)


def scrub(text: str, findings: list[Finding] | None = None) -> str:
    findings = find_pii(text) if findings is None else findings
    out, last = [], 0
    for finding in findings:
        out.append(text[last:finding.start])
        out.append(PLACEHOLDERS[finding.kind])
        last = finding.end
    out.append(text[last:])
    return "".join(out)
