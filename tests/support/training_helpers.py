"""Training data and runs for tests: a workspace with a tiny model locked, date-rewriting
examples, the canonical split, run params, and waiting on a run's journal."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from helpers import phase1_ready

from weightgate.core.demo.data import demo_examples
from weightgate.core.demo.evalsets import INSTRUCTION
from weightgate.core.engine.events import read_events
from weightgate.core.engine.jobs import events_path, read_status
from weightgate.core.weights.local_source import lock_local_source


def make_workspace(root: Path, model_dir: Path):
    ws = phase1_ready(root)
    lock_local_source(ws, str(model_dir))
    return ws, write_split(ws.root / "prepared")


def params_for(split, steps: int, **extra) -> dict:
    return {"train_file": str(split[0]), "val_file": str(split[1]), "steps": steps,
            "overrides": dict(OVERRIDES), **extra}


def wait_for(job_dir: Path, predicate, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    offset = 0
    while time.monotonic() < deadline:
        events, offset = read_events(events_path(job_dir), offset)
        for event in events:
            if predicate(event):
                return event
        if read_status(job_dir).is_terminal:
            raise AssertionError(f"job ended first: {read_status(job_dir)}")
        time.sleep(0.05)
    raise AssertionError("timed out")


def checkpoint_at_least(step: int):
    return lambda e: e.kind == "artifact" and e.payload.get("label") == "checkpoint" and e.payload["step"] >= step


def crafted_lines() -> tuple[list[str], dict[str, int]]:
    """The bad dataset and the 1-based line of each planted problem."""
    lines: list[str] = []
    where: dict[str, int] = {}

    def add(key: str | None, value) -> None:
        lines.append(value if isinstance(value, str) else json.dumps(value))
        if key:
            where[key] = len(lines)

    # One valid example of each format.
    add("chat", chat("Rewrite Mar 3rd '09 as YYYY-MM-DD.", "2009-03-03", id="first"))
    add("alpaca", {"instruction": "Rewrite the date as YYYY-MM-DD.", "input": "the 9th of May, 1911",
                   "output": "1911-05-09", "tags": ["common"]})
    add("sharegpt", {"conversations": [{"from": "system", "value": "You rewrite dates."},
                                       {"from": "human", "value": "Rewrite 17 August 1945 as YYYY-MM-DD."},
                                       {"from": "gpt", "value": "1945-08-17"}], "tags": ["common"]})
    add("text", {"text": "A short note about calendars: the Gregorian calendar was adopted in 1582.",
                 "tags": ["common"]})
    # Schema errors, one kind a line.
    add("bad_role", {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}]})
    add("bad_json", '{"messages": [{"role": "user", "content": "unclosed"}')
    add("alpaca_no_output", {"instruction": "Rewrite 1 May 2001 as YYYY-MM-DD.", "input": ""})
    add("sharegpt_bad_from", {"conversations": [{"from": "alien", "value": "x"}, {"from": "gpt", "value": "y"}]})
    add("unknown_format", {"prompt": "Rewrite 2 May 2002", "completion": "2002-05-02"})
    add("ends_with_user", {"messages": [{"role": "user", "content": "Rewrite 3 May 2003"}]})
    # Filler: varied date examples (they avoid the demo eval dates), all tagged common.
    for example in demo_examples(count=30, seed=7, plant=False):
        add(None, {"messages": example["messages"], "tags": ["common"]})
    # Duplicates: an exact copy of the chat example in other case and spacing, a near copy.
    add("exact_dup", chat("rewrite  MAR 3rd '09 as yyyy-mm-dd", "2009-03-03"))
    add("near_original", chat(LONG_SENTENCE + "Please answer as YYYY-MM-DD.", "1962-09-14"))
    add("near_dup", chat(LONG_SENTENCE.replace("photograph", "postcard") + "Please answer as YYYY-MM-DD.",
                         "1962-09-14"))
    # Alike in words, two questions by their numbers: not duplicates.
    bakery = "Our bakery's order book says the wedding cake was delivered on the {}rd of June, 1988; " \
             "please write that day as YYYY-MM-DD."
    add("other_day_a", chat(bakery.format(3), "1988-06-03"))
    add("other_day_b", chat(bakery.format(8).replace("8rd", "8th"), "1988-06-08"))
    # Leakage: a task eval case (with its answer) and a general one.
    add("leak_task", chat(INSTRUCTION + "July 4, 1976", "1976-07-04"))
    add("leak_general", chat("Quick one: what is the capital of Japan? Answer in one word.", "Tokyo"))
    # Over-long for the tiny model's 512-token context.
    add("over_long", chat("Here is the log. " + " ".join(f"line {n} ok." for n in range(400))
                          + " Rewrite 5 June 2005 as YYYY-MM-DD.", "2005-06-05"))
    # PII, one kind per line, and a 16-digit number that fails Luhn (not a card).
    add("email", chat("Send 1 May 1999 as YYYY-MM-DD to ana.lopez@example.org please.", "1999-05-01"))
    add("phone", chat("My number is +44 20 7946 0958; rewrite 2 May 1998 as YYYY-MM-DD.", "1998-05-02"))
    add("card", chat("Card 4111 1111 1111 1111 expires 3 May 1997; rewrite that date as YYYY-MM-DD.", "1997-05-03"))
    add("not_card", chat("Order 4111 1111 1111 1112 shipped 4 May 1996; rewrite that as YYYY-MM-DD.", "1996-05-04"))
    add("iban", chat("Pay DE89 3704 0044 0532 0130 00 by 5 May 1995, as YYYY-MM-DD.", "1995-05-05"))
    add("ipv4", chat("Server 10.20.30.40 rebooted on 6 May 1994; rewrite it as YYYY-MM-DD.", "1994-05-06"))
    add("ipv6", chat("Host 2001:db8::ff00:42:8329 failed on 7 May 1993; as YYYY-MM-DD?", "1993-05-07"))
    add("ssn", chat("SSN 123-45-6789 was issued 8 May 1992; rewrite as YYYY-MM-DD.", "1992-05-08"))
    # The one edge-tagged example: common outnumbers edge far beyond 10 to 1.
    add("edge", chat("Rewrite 29/02/2000 (day first) as YYYY-MM-DD.", "2000-02-29", tags=("edge",)))
    return lines, where


# Small and quick: 4 examples a step, a checkpoint every 3 steps.
OVERRIDES = {"effective_batch": 4, "eval_every": 3, "lr": 1e-3}


def write_split(directory: Path, train: int = 40, val: int = 8) -> tuple[Path, Path]:
    rng = random.Random(0)
    directory.mkdir(parents=True, exist_ok=True)
    train_path, val_path = directory / "train.jsonl", directory / "val.jsonl"
    train_path.write_text("".join(json.dumps(date_record(rng, f"t{i}")) + "\n" for i in range(train)))
    val_path.write_text("".join(json.dumps(date_record(rng, f"v{i}")) + "\n" for i in range(val)))
    return train_path, val_path


def chat(user: str, answer: str, tags=("common",), **extra) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
            "tags": list(tags), **extra}


LONG_SENTENCE = ("I found this written on the back of an old photograph from my grandmother's album, "
                 "next to a note about the harvest festival in the village, and I need it for a form: "
                 "the 14th of September, 1962. ")


def date_record(rng: random.Random, rid: str) -> dict:
    m, d, y = rng.randrange(12), rng.randrange(1, 28), rng.randrange(1950, 2030)
    return {"id": rid, "messages": [{"role": "system", "content": "Rewrite the date as YYYY-MM-DD."},
                                    {"role": "user", "content": f"{MONTHS[m]} {d}, {y}"},
                                    {"role": "assistant", "content": f"{y}-{m + 1:02d}-{d:02d}"}]}


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_bitwise(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name].view(torch.uint8), b[name].view(torch.uint8)), name
