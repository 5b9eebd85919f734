"""The demo's training data: synthetic date-rewriting examples in chat format, deterministic.

    lines = demo_train_lines()            # JSONL lines for data/train.jsonl
    PLANTED                               # what was planted on purpose, for the data checks to find

The user asks to rewrite a date written in some English format as YYYY-MM-DD; the assistant
answers with the ISO date. The formats are the task's: month or day first, abbreviations,
ordinals, weekdays, numeric dates marked US / UK / German, two-digit years, unpadded and compact
ISO, and named days (Christmas Eve 1987). Half of the requests use the task's own instruction,
the rest other wordings. Dates are drawn (seeded) from 1900-2035, never one of the demo eval set's
dates, and no written date repeats.

One example in six (while they last) is a general question answered by the base model itself
(self-distilled replay, see REPLAY_QUESTIONS), so that learning the date format does not teach
the model to answer every question with a date or change how it answers the rest (the general
set catches that forgetting). None of them is a question of the general eval set.

Planted for the checks to find: exact duplicates, near duplicates (the same question with one
word of the request changed), a few PII strings (an email, a phone number, a card number passing
Luhn, an IBAN) and one example far longer than the model's context.
"""

from __future__ import annotations

import datetime as dt
import json
import random

from weightgate.core.demo.evalsets import DATE_CASES, INSTRUCTION, TASK_MAX_NEW_TOKENS
from weightgate.core.engine.workspace import template_text

SEED = 20240315
# 480 regular examples (dates and general replay), before the planted ones. Smaller budgets were
# measured and miss the task threshold: see [training] in the demo's weightgate.toml.
COUNT = 480
GENERAL_EVERY = 6      # one regular example in six is general replay (all 57 questions at COUNT 480)
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
SHORT = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
DOTTED = ["Jan.", "Feb.", "Mar.", "Apr.", "May", "June", "July", "Aug.", "Sept.", "Oct.", "Nov.", "Dec."]
FIRST_YEAR, LAST_YEAR = 1900, 2035


def ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def two_digit_year(date: dt.date) -> bool:
    """'99 and '05 read unambiguously (1950-2029) only."""
    return 1950 <= date.year <= 2029


# (name, tag, how a date is written, whether the format can write this date). Tags: common
# formats, the edge ones (numeric, ambiguous order, two-digit years), the hard named days, so the
# balance check has something to measure.
def _any(date: dt.date) -> bool:
    return True


FORMATS = [
    ("month_day_year", "common", lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}", _any),
    ("day_month_year", "common", lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}", _any),
    ("ordinal_of", "common", lambda d: f"the {ordinal(d.day)} of {MONTHS[d.month - 1]}, {d.year}", _any),
    ("ordinal_of_bare", "common", lambda d: f"{ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}", _any),
    ("month_ordinal", "common", lambda d: f"{MONTHS[d.month - 1]} {ordinal(d.day)}, {d.year}", _any),
    ("month_the_ordinal", "common", lambda d: f"{MONTHS[d.month - 1]} the {ordinal(d.day)}, {d.year}", _any),
    ("short_month", "common", lambda d: f"{SHORT[d.month - 1]} {d.day}, {d.year}", _any),
    ("dotted_month", "common", lambda d: f"{DOTTED[d.month - 1]} {d.day}, {d.year}", _any),
    ("short_day_first", "common", lambda d: f"{d.day} {SHORT[d.month - 1]} {d.year}", _any),
    ("weekday", "common", lambda d: f"{d.strftime('%A')}, {MONTHS[d.month - 1]} {d.day}, {d.year}", _any),
    ("weekday_day_first", "common", lambda d: f"{d.strftime('%A')}, {d.day} {MONTHS[d.month - 1]} {d.year}",
     _any),
    ("us_slash", "edge", lambda d: f"{d.month:02d}/{d.day:02d}/{d.year} (US format)", _any),
    ("uk_slash", "edge", lambda d: f"{d.day:02d}/{d.month:02d}/{d.year} (UK format)", _any),
    ("us_slash_short", "edge", lambda d: f"{d.month}/{d.day}/{d.year % 100:02d} (US format)", two_digit_year),
    ("german_dotted", "edge", lambda d: f"{d.day:02d}.{d.month:02d}.{d.year} (German format, day first)", _any),
    ("dotted_day_first", "edge", lambda d: f"{d.day}.{d.month}.{d.year} (day first)", _any),
    ("short_apostrophe", "edge", lambda d: f"{SHORT[d.month - 1]} {ordinal(d.day)} '{d.year % 100:02d}",
     two_digit_year),
    ("ordinal_apostrophe", "edge", lambda d: f"the {ordinal(d.day)} of {SHORT[d.month - 1]} '{d.year % 100:02d}",
     two_digit_year),
    ("iso_unpadded", "edge", lambda d: f"{d.year}-{d.month}-{d.day}", _any),
    ("compact", "edge", lambda d: f"{d.year}{d.month:02d}{d.day:02d}", _any),
]
# Named days: (how it is written with {year}, month, day).
NAMED_DAYS = [
    ("Christmas Eve {year}", 12, 24), ("Christmas Day {year}", 12, 25), ("the day after Christmas {year}", 12, 26),
    ("Boxing Day {year}", 12, 26), ("New Year's Day {year}", 1, 1), ("New Year's Eve {year}", 12, 31),
    ("Halloween {year}", 10, 31), ("Valentine's Day {year}", 2, 14), ("the Ides of March, {year}", 3, 15),
    ("April Fools' Day {year}", 4, 1), ("Independence Day {year} (US)", 7, 4), ("Bastille Day {year}", 7, 14),
    ("St. Patrick's Day {year}", 3, 17), ("Guy Fawkes Night {year}", 11, 5),
    ("the day before Christmas Eve {year}", 12, 23),
]
NAMED_SHARE = 0.2
REQUESTS = [
    INSTRUCTION + "{date}",       # the task's own prompt (evals/task.jsonl): half of the requests
    "Rewrite this date as YYYY-MM-DD: {date}",
    "Convert {date} to ISO 8601 (YYYY-MM-DD). Reply with the date only.",
    "What is {date} in YYYY-MM-DD format?",
    "Please write {date} as an ISO date (YYYY-MM-DD).",
    "Format the date {date} as YYYY-MM-DD.",
]
# General replay: questions that are not in evals/general.jsonl, each with the fact a right
# answer states. The answers trained on are the base model's own (self-distilled replay): its
# greedy answer to each question, kept only when it states the fact (REPLAY_FILE, written by
# scripts/demo_replay.py from the demo model). Replaying what the model already says asks it to
# change nothing there, while hand-written answers teach a new style, and with the style the
# 135M model loses facts it reaches by talking on. Measured on the demo (three epochs of 8):
# hand-written one-sentence answers took the 24 general questions the base answered from 24/24
# to 22/24, hand-written two-sentence answers also to 22/24, the self-distilled answers to 23/24;
# on today's 50-case general set the demo's adapter goes from 39/50 to 37/50 (3 lost, 1 won).
REPLAY_QUESTIONS = [
    *((f"What is the capital of {country}? Answer in one word.", city)
      for country, city in [("Portugal", "Lisbon"), ("Greece", "Athens"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
                            ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Ireland", "Dublin"), ("Kenya", "Nairobi"),
                            ("Peru", "Lima"), ("Russia", "Moscow"), ("Egypt", "Cairo"), ("Denmark", "Copenhagen"),
                            ("Finland", "Helsinki"), ("Thailand", "Bangkok"), ("Argentina", "Buenos Aires"),
                            ("Hungary", "Budapest"), ("Cuba", "Havana"), ("Turkey", "Ankara"),
                            ("Australia", "Canberra"), ("Chile", "Santiago"), ("Belgium", "Brussels"),
                            ("Switzerland", "Bern"), ("Vietnam", "Hanoi"), ("Iran", "Tehran"),
                            ("Indonesia", "Jakarta"), ("the Philippines", "Manila"), ("Colombia", "Bogot"),
                            ("Venezuela", "Caracas"), ("Nigeria", "Abuja"), ("the Czech Republic", "Prague"),
                            ("Romania", "Bucharest"), ("Scotland", "Edinburgh")]),
    *((f"What is {a} {op} {b}? Answer with a number.", str(result))
      for a, op, b, result in [(3, "+", 6, 9), (5, "+", 6, 11), (9, "-", 6, 3), (3, "x", 3, 9), (6, "x", 5, 30),
                               (15, "+", 15, 30), (7, "+", 2, 9), (10, "-", 4, 6), (8, "+", 1, 9), (7, "x", 2, 14),
                               (20, "-", 5, 15), (4, "x", 4, 16), (12, "+", 3, 15), (100, "-", 1, 99)]),
    ("How many sides does a triangle have? Answer with a number.", "3"),
    ("How many minutes are in an hour? Answer with a number.", "60"),
    ("How many sides does a hexagon have? Answer with a number.", "6"),
    ("How many seconds are in a minute? Answer with a number.", "60"),
    ("How many wheels does a bicycle have? Answer with a number.", "2"),
    ("How many legs does an insect have? Answer with a number.", "6"),
    ("How many strings does a violin have? Answer with a number.", "4"),
    ("What is the square root of 9? Answer with a number.", "3"),
    ("How many continents are there? Answer with a number.", "7"),
    ("Which planet is known as the Red Planet?", "Mars"),
    ("Which planet is closest to the Sun?", "Mercury"),
    ("What is the smallest planet in the solar system?", "Mercury"),
    ("What is the hottest planet in the solar system?", "Venus"),
    ("Which star is closest to the Earth?", "Sun"),
    ("What is the chemical symbol for silver?", "Ag"),
    ("What is the chemical symbol for iron?", "Fe"),
    ("What is the chemical formula of water?", "H2O"),
    ("Which metal is liquid at room temperature?", "mercury"),
    ("What is the hardest natural substance?", "diamond"),
    ("What is the opposite of up?", "down"),
    ("What is the opposite of big?", "small"),
    ("What is the opposite of wet?", "dry"),
    ("What is the opposite of early?", "late"),
    ("Who painted the Mona Lisa?", "Leonardo"),
    ("Who wrote Hamlet?", "Shakespeare"),
    ("Who wrote Pride and Prejudice?", "Austen"),
    ("Who invented the telephone?", "Bell"),
    ("Who was the first person to walk on the Moon?", "Armstrong"),
    ("What is frozen water called?", "ice"),
    ("Which animal barks?", "dog"),
    ("Which animal says moo?", "cow"),
    ("Which animal has a trunk?", "elephant"),
    ("What do you call a baby cat?", "kitten"),
    ("What do you call a baby dog?", "pupp"),
    ("Which bird is a symbol of peace?", "dove"),
    ("What color is fresh grass?", "green"),
    ("What color is snow?", "white"),
    ("What color is a ripe banana?", "yellow"),
    ("What color is a stop sign?", "red"),
    ("What is the largest mammal on Earth?", "blue whale"),
    ("What is the tallest mountain on Earth?", "Everest"),
    ("What is the longest river in Africa?", "Nile"),
    ("What is the largest continent?", "Asia"),
    ("On which continent is Brazil?", "South America"),
    ("On which continent is France?", "Europe"),
    ("On which continent is Japan?", "Asia"),
    ("What is the freezing point of water in degrees Celsius?", "0"),
    ("What do bees make?", "honey"),
    ("What language is spoken in Brazil?", "Portuguese"),
    ("What is the currency of Japan?", "yen"),
    ("What is the currency of the United Kingdom?", "pound"),
    ("What do cows drink?", "water"),
    ("What is the main ingredient of bread?", "flour"),
    ("Which season comes after winter?", "spring"),
    ("What is the first letter of the English alphabet?", "A"),
    ("What do caterpillars turn into?", "butterfl"),
    ("What shape has four equal sides and four right angles?", "square"),
]
REPLAY_FILE = "replay.jsonl"      # under core/demo/templates/: {"question", "answer"} per line


def general_replay() -> list[tuple[str, str]]:
    """(question, the base model's answer) from REPLAY_FILE, in the order of REPLAY_QUESTIONS."""

    stored = {}
    for line in template_text(REPLAY_FILE, __package__).splitlines():
        record = json.loads(line) if line.strip() else {}
        if "question" in record:
            stored[record["question"]] = record["answer"]
    return [(question, stored[question]) for question, _ in REPLAY_QUESTIONS if question in stored]


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


def _request(rng: random.Random, written: str) -> str:
    template = REQUESTS[0] if rng.random() < 0.5 else REQUESTS[1 + rng.randrange(len(REQUESTS) - 1)]
    return template.format(date=written)


def _date_examples(count: int, rng: random.Random) -> list[tuple[str, str, str, str]]:
    """`count` (request, answer, tag, format name) with distinct written dates, none on an eval
    set's date. Named days have the format name "named_day"."""
    avoid = _eval_dates()
    first = dt.date(FIRST_YEAR, 1, 1)
    span = (dt.date(LAST_YEAR, 12, 31) - first).days
    seen: set[str] = set()
    out = []
    while len(out) < count:
        if rng.random() < NAMED_SHARE:
            pattern, month, day = NAMED_DAYS[rng.randrange(len(NAMED_DAYS))]
            date = dt.date(rng.randrange(FIRST_YEAR, LAST_YEAR + 1), month, day)
            written, tag, name = pattern.format(year=date.year), "hard", "named_day"
        else:
            date = first + dt.timedelta(days=rng.randrange(span + 1))
            name, tag, write, can_write = FORMATS[rng.randrange(len(FORMATS))]
            if not can_write(date):
                continue
            written = write(date)
        # By the text, not the format: "May 21, 2016" is written alike in two formats.
        if date in avoid or written in seen:
            continue
        seen.add(written)
        out.append((_request(rng, written), date.isoformat(), tag, name))
    return out


def _draw(count: int, seed: int) -> tuple[list[tuple[str, str]], list[int], list[tuple[str, str, str, str]]]:
    """The seeded draws behind demo_examples: the replay in its order, the replay slots, the dates."""
    rng = random.Random(seed)
    general = general_replay()
    rng.shuffle(general)
    slots = [index for index in range(count) if index % GENERAL_EVERY == 2][:len(general)]
    return general, slots, _date_examples(count - len(slots), rng)


def date_format_counts(count: int = COUNT, seed: int = SEED) -> dict[str, int]:
    """How many of demo_examples' date examples are written in each format (named days together)."""
    counts: dict[str, int] = {}
    for *_, name in _draw(count, seed)[2]:
        counts[name] = counts.get(name, 0) + 1
    return counts


def demo_examples(count: int = COUNT, seed: int = SEED, *, plant: bool = True) -> list[dict]:
    """`count` regular examples, then (plant=True, count >= 50) the planted ones spread among them.

    Every GENERAL_EVERY-th regular example (the 3rd, 9th, ...) is general replay while the list
    lasts; the others are dates, so demo-0010 ... demo-0040 (copied by the planted ones) are dates.
    """
    general, slots, dates = _draw(count, seed)
    dates = iter(dates)
    replay = iter(general)
    examples = []
    for index in range(count):
        example_id = f"demo-{index + 1:04d}"
        if index in slots:
            question, answer = next(replay)
            examples.append(_example(example_id, question, answer, ["general"]))
        else:
            request, answer, tag, _ = next(dates)
            examples.append(_example(example_id, request, answer, [tag]))
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
    # Planted examples are spread through the file (up to position 375), not appended at its end.
    result = list(examples)
    for position, example in zip((50, 120, 180, 240, 260, 290, 320, 350, 375), planted):
        result.insert(position, example)
    return result


def demo_train_lines(count: int = COUNT, seed: int = SEED) -> list[str]:
    return [json.dumps(example, ensure_ascii=False) for example in demo_examples(count, seed)]


# Held out: date formats the training data never contains, to check that the adapter learned to
# read dates rather than the demo's formats (tune for the task, not for the 30 cases of
# evals/task.jsonl). Each has a pattern that finds it in a request; no training request matches
# any of them (tests/unit/demo/test_demo_data.py). scripts/demo_heldout.py scores an adapter on
# the set (scripts/demo_heldout.jsonl, written by heldout_lines()).
ORDINAL_WORDS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
                 "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
                 "eighteenth", "nineteenth", "twentieth", "twenty-first", "twenty-second", "twenty-third",
                 "twenty-fourth", "twenty-fifth", "twenty-sixth", "twenty-seventh", "twenty-eighth",
                 "twenty-ninth", "thirtieth", "thirty-first"]
_FULL = "|".join(MONTHS)
_ABBREVIATED = "|".join(SHORT)
# (name, how a date is written, the pattern that finds the format in a request).
HELDOUT_FORMATS = [
    ("year_slash", lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}", r"\b\d{4}/\d{1,2}/\d{1,2}\b"),
    ("year_dotted", lambda d: f"{d.year}.{d.month:02d}.{d.day:02d}", r"\b\d{4}\.\d{1,2}\.\d{1,2}\b"),
    ("ordinal_day_of", lambda d: f"the {ordinal(d.day)} day of {MONTHS[d.month - 1]}, {d.year}",
     r"\b\d{1,2}(st|nd|rd|th) day of\b"),
    ("ordinal_words", lambda d: f"the {ORDINAL_WORDS[d.day - 1]} of {MONTHS[d.month - 1]}, {d.year}",
     rf"\b({'|'.join(ORDINAL_WORDS)}) of ({_FULL})\b"),
    ("lowercase_month", lambda d: f"{MONTHS[d.month - 1].lower()} {d.day}, {d.year}",
     rf"\b({_FULL.lower()}) \d{{1,2}}\b"),
    ("uppercase_month", lambda d: f"{d.day} {MONTHS[d.month - 1].upper()} {d.year}", rf"\b({_FULL.upper()})\b"),
    ("day_dash_short_month", lambda d: f"{d.day:02d}-{SHORT[d.month - 1]}-{d.year}",
     rf"\b\d{{1,2}}-({_ABBREVIATED})-\d{{2,4}}\b"),
    ("no_comma", lambda d: f"{MONTHS[d.month - 1]} {d.day} {d.year}", rf"\b({_FULL}) \d{{1,2}} \d{{4}}\b"),
    ("short_weekday", lambda d: f"{d.strftime('%a')}, {SHORT[d.month - 1]} {d.day}, {d.year}",
     r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun), "),
    ("month_the_ordinal_word", lambda d: f"{MONTHS[d.month - 1]} the {ORDINAL_WORDS[d.day - 1]}, {d.year}",
     rf"\b({_FULL}) the ({'|'.join(ORDINAL_WORDS)})\b"),
]
HELDOUT_SEED = 19990503
HELDOUT_PER_FORMAT = 6
HELDOUT_AVOID_COUNT = 480


def heldout_cases(per_format: int = HELDOUT_PER_FORMAT, seed: int = HELDOUT_SEED) -> list[tuple[str, str, str, str]]:
    """(id, format name, date as written, ISO answer): `per_format` dates in each held-out format,
    none on a date of the eval set or of the training data at any COUNT up to HELDOUT_AVOID_COUNT
    (the dates are drawn in sequence, so a smaller COUNT draws a prefix of them): the set stays
    the same while the training data's size is tuned."""
    rng = random.Random(seed)
    avoid = _eval_dates() | {dt.date.fromisoformat(answer) for _, answer, _, _ in _draw(HELDOUT_AVOID_COUNT, SEED)[2]}
    first = dt.date(FIRST_YEAR, 1, 1)
    span = (dt.date(LAST_YEAR, 12, 31) - first).days
    cases = []
    for name, write, _ in HELDOUT_FORMATS:
        chosen: list[dt.date] = []
        while len(chosen) < per_format:
            date = first + dt.timedelta(days=rng.randrange(span + 1))
            if date not in avoid and date not in chosen:
                chosen.append(date)
        cases += [(f"heldout-{name}-{n + 1}", name, write(date), date.isoformat()) for n, date in enumerate(chosen)]
    return cases


def heldout_lines() -> list[str]:
    """The held-out set as an eval set (the task's prompt and scoring, the format as the tag)."""
    lines = [json.dumps({"_set": {"max_new_tokens": TASK_MAX_NEW_TOKENS}})]
    for case_id, name, written, answer in heldout_cases():
        lines.append(json.dumps({"id": case_id, "input": INSTRUCTION + written, "expected": answer,
                                 "scorer": "exact", "tags": [name]}))
    return lines
