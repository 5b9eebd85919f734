"""The demo's training data: synthetic date-rewriting examples in chat format, deterministic.

    lines = demo_train_lines()            # JSONL lines for data/train.jsonl
    PLANTED                               # what was planted on purpose, for the data checks to find

The user asks to rewrite a date written in some English format as YYYY-MM-DD; the assistant
answers with the ISO date. Dates are drawn (seeded) from 1950-2035, never one of the demo eval
set's dates, and no written date repeats, except what is planted for the checks to find:
exact duplicates, near duplicates (the same question with one word of the request changed), a
few PII strings (an email, a phone number, a card number passing Luhn, an IBAN) and one example
far longer than the model's context.
"""

from __future__ import annotations

import datetime as dt
import json
import random

from core.demo import DATE_CASES

SEED = 20240315
COUNT = 400            # regular examples, before the planted ones
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
SHORT = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


# (name, tag, how a date is written). Tags: common formats vs the edge ones (numeric, ambiguous
# order, two-digit years), so the balance check has something to measure.
FORMATS = [
    ("month_day_year", "common", lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}"),
    ("day_month_year", "common", lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}"),
    ("ordinal_of", "common", lambda d: f"the {ordinal(d.day)} of {MONTHS[d.month - 1]}, {d.year}"),
    ("short_month", "common", lambda d: f"{SHORT[d.month - 1]} {d.day}, {d.year}"),
    ("weekday", "common", lambda d: f"{d.strftime('%A')}, {MONTHS[d.month - 1]} {d.day}, {d.year}"),
    ("day_first_slash", "edge", lambda d: f"{d.day:02d}/{d.month:02d}/{d.year} (day first)"),
    ("month_first_slash", "edge", lambda d: f"{d.month:02d}/{d.day:02d}/{d.year} (month first)"),
    ("short_apostrophe", "edge", lambda d: f"{SHORT[d.month - 1]} {ordinal(d.day)} '{d.year % 100:02d}"),
    ("dotted_day_first", "edge", lambda d: f"{d.day}.{d.month}.{d.year} (day first)"),
]
REQUESTS = [
    "Rewrite this date as YYYY-MM-DD: {date}",
    "Convert {date} to ISO 8601 (YYYY-MM-DD). Reply with the date only.",
    "What is {date} in YYYY-MM-DD format?",
    "Please write {date} as an ISO date (YYYY-MM-DD).",
    "Format the date {date} as YYYY-MM-DD.",
    "{date} -> YYYY-MM-DD?",
]

# What is planted (ids below), so tests and the demo walkthrough can check each one is found.
PLANTED = {
    "exact_duplicates": ["demo-dup-1", "demo-dup-2"],          # copies of demo-0010 and demo-0020
    "near_duplicates": ["demo-near-1", "demo-near-2"],         # of demo-0030 and demo-0040
    "pii": {"demo-pii-email": "email", "demo-pii-phone": "phone", "demo-pii-card": "card",
            "demo-pii-iban": "iban"},
    "over_long": ["demo-long"],
}


def _eval_dates() -> set[dt.date]:
    return {dt.date.fromisoformat(answer) for _, _, answer, _ in DATE_CASES}


def _example(example_id: str, request: str, answer: str, tags: list[str]) -> dict:
    return {"id": example_id, "messages": [{"role": "user", "content": request},
                                           {"role": "assistant", "content": answer}], "tags": tags}


def demo_examples(count: int = COUNT, seed: int = SEED, *, plant: bool = True) -> list[dict]:
    """`count` regular examples, then (plant=True, count >= 50) the planted ones spread among them."""
    rng = random.Random(seed)
    avoid = _eval_dates()
    first, span = dt.date(1950, 1, 1), (dt.date(2035, 12, 31) - dt.date(1950, 1, 1)).days
    seen: set[str] = set()
    examples = []
    while len(examples) < count:
        date = first + dt.timedelta(days=rng.randrange(span + 1))
        name, tag, write = FORMATS[rng.randrange(len(FORMATS))]
        written = write(date)
        # By the text, not the format: "May 21, 2016" is written alike in two formats.
        if date in avoid or written in seen:
            continue
        seen.add(written)
        request = REQUESTS[rng.randrange(len(REQUESTS))].format(date=written)
        examples.append(_example(f"demo-{len(examples) + 1:04d}", request, date.isoformat(), [tag]))
    if not plant:
        return examples
    by_id = {example["id"]: example for example in examples}

    def copy(source: str, new_id: str, change=None) -> dict:
        example = json.loads(json.dumps(by_id[source]))
        example["id"] = new_id
        if change:
            example["messages"][0]["content"] = change(example["messages"][0]["content"])
        return example

    # A near duplicate: the same question in a longer request with one word changed.
    for source in ("demo-0030", "demo-0040"):
        message = by_id[source]["messages"][0]
        message["content"] = "I found this in an old diary and need it for a form. " + message["content"]
    planted = [
        copy("demo-0010", "demo-dup-1"),
        copy("demo-0020", "demo-dup-2"),
        copy("demo-0030", "demo-near-1", lambda text: text.replace("old diary", "old letter")),
        copy("demo-0040", "demo-near-2", lambda text: text.replace("old diary", "old letter")),
    ]
    pii = [
        ("demo-pii-email", "My email is jordan.miles@example.com; rewrite June 9, 1987 as YYYY-MM-DD.",
         "1987-06-09"),
        ("demo-pii-phone", "Call me at +1 (415) 555-0132 after you rewrite 3 October 1964 as YYYY-MM-DD.",
         "1964-10-03"),
        ("demo-pii-card", "My card 4539 1488 0343 6467 expires on the 28th of February, 2027; write that date "
                          "as YYYY-MM-DD.", "2027-02-28"),
        ("demo-pii-iban", "The transfer to GB82 WEST 1234 5698 7654 32 is due Nov 17, 2025. What is that in "
                          "YYYY-MM-DD format?", "2025-11-17"),
    ]
    planted += [_example(example_id, text, answer, ["common"]) for example_id, text, answer in pii]
    # One example far beyond the demo model's context window (8192 tokens): a pasted log.
    filler = " ".join(f"entry {n}: backup finished without errors." for n in range(2500))
    planted.append(_example("demo-long", f"Here is the whole server log. {filler} Rewrite the date of the last "
                                         "entry, April 2, 2031, as YYYY-MM-DD.", "2031-04-02", ["edge"]))
    # Planted examples are spread through the file, not appended at its end.
    result = list(examples)
    for position, example in zip((50, 120, 180, 240, 260, 290, 320, 350, 375), planted):
        result.insert(position, example)
    return result


def demo_train_lines(count: int = COUNT, seed: int = SEED) -> list[str]:
    return [json.dumps(example, ensure_ascii=False) for example in demo_examples(count, seed)]
