"""Words a user acts on (#17.12): every item's "needs" names a command that exists and is the one
that decides the item; a broken weightgate.toml string says "missing closing quote" at the
opening quote; the memory comparison says which way the estimate is off."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from weightgate.core.engine.checklist import ITEMS, get_item
from weightgate.core.engine.workspace import init_workspace
from weightgate.core.memory.checks import error_words, verdict
from weightgate.tui.cli import build_app


@pytest.mark.parametrize(("item", "command"), [
    ("select.benchmark", "weightgate eval benchmark"), ("select.choice", "weightgate weights choose"),
    ("eval.latency", "weightgate eval latency"), ("eval.determinism", "weightgate eval determinism"),
    ("eval.baseline", "weightgate eval run")])
def test_an_items_hint_names_the_command_that_decides_it(item, command):
    assert command in get_item(item).needs


def test_every_command_named_in_a_hint_exists():
    named = {match for item in ITEMS if item.needs
             for match in re.findall(r"weightgate ([a-z][a-z-]*(?: [a-z][a-z-]*)?)", item.needs)}
    assert "eval benchmark" in named
    for words in sorted(named):
        out = CliRunner().invoke(build_app(), [*words.split(), "--help"], prog_name="weightgate")
        assert out.exit_code == 0 and f"Usage: weightgate {words}" in out.output, (words, out.output[-300:])


def test_an_unterminated_toml_string_reports_the_missing_closing_quote(tmp_path):
    ws = init_workspace(tmp_path / "w")
    lines = ws.config_path.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if re.match(r'\s*task\s*=\s*"', line))
    lines[number] = lines[number].rstrip()[:-1]   # the user forgot the closing quote
    ws.config_path.write_text("\n".join(lines) + "\n")
    out = subprocess.run([sys.executable, "-m", "weightgate", "-w", str(ws.root), "status"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    column = lines[number].index('"') + 1
    assert f"weightgate.toml:{number + 1}:{column}: invalid TOML: missing closing quote" in out.stderr
    assert "add it at the end of the value" in out.stderr
    assert "Control characters" not in out.stderr and "\\u000a" not in out.stderr


def test_the_memory_error_says_which_way_the_estimate_is_off():
    assert error_words(0.032) == "estimate 3.2% above measured"
    assert error_words(-0.071) == "estimate 7.1% below measured"
    rows = {"weights": {"estimate": 929, "measured": 1000, "error": -0.071},
            "load": {"estimate": 1100, "measured": 1000, "error": 0.1}}
    status, detail = verdict({"rows": rows, "device": "cpu", "warmed": True})
    assert status == "fail" and detail.startswith("weights: estimate 7.1% below measured (tolerance 5% either way)")
    rows["weights"] = {"estimate": 1010, "measured": 1000, "error": 0.01}
    assert verdict({"rows": rows, "device": "cpu", "warmed": True}) == (
        "pass", "weights: estimate 1.0% above measured, load: estimate 10.0% above measured")


@pytest.mark.parametrize(("source", "name"), [
    ("/data/gguf/SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct"),   # the demo's
    ("/m/llama-3.2-1b-instruct-q4_k_m.gguf", "llama-3.2-1b-instruct"),
    ("/m/phi-3-mini.F16.gguf", "phi-3-mini"),
    ("/m/qwen2.5-0.5b/model", "qwen2.5-0.5b")])
def test_the_release_name_does_not_carry_a_gguf_quantization_the_version_lacks(tmp_path, source, name):
    from weightgate.core.engine.lock import ModelLock, write_lock
    from weightgate.core.registry.store import default_name

    ws = init_workspace(tmp_path / "w")
    write_lock(ws, ModelLock(kind="gguf" if source.endswith(".gguf") else "local", source=source))
    assert default_name(ws) == name
