"""The serving commands serve what was evaluated: each `transformers serve` command is parsed by
transformers' own CLI (its typer app; no server starts); vLLM and SGLang cannot be installed on
this CPU machine, so their flags are checked against lists recorded from their documentation."""

import shlex
from pathlib import Path

import pytest

from weightgate.core.registry.serving import serve_argv, serve_commands

# `vllm serve` flags weightgate emits, from vLLM's "Engine Arguments" / OpenAI-compatible server
# documentation (vLLM 0.11 docs, "latest" as read in 2026): --lora-modules takes NAME=PATH,
# --max-lora-rank one of 8..512, --quantization bitsandbytes is in-flight 4-bit (the "BitsAndBytes"
# page: "Inflight quantization: load as 4bit quantization").
VLLM_FLAGS = {"--host", "--port", "--dtype", "--revision", "--served-model-name", "--enable-lora", "--lora-modules",
              "--max-lora-rank", "--quantization", "--max-model-len"}
VLLM_VALUE_FREE = {"--enable-lora"}
# `python -m sglang.launch_server` flags, from SGLang's "Server Arguments" and "LoRA Serving" docs
# (as read in 2026): --lora-paths NAME=PATH, --context-length, --served-model-name.
SGLANG_FLAGS = {"--model-path", "--host", "--port", "--dtype", "--revision", "--served-model-name", "--enable-lora",
                "--lora-paths", "--max-lora-rank", "--quantization", "--context-length"}
SGLANG_VALUE_FREE = {"--enable-lora"}


def manifest(relation="merged", precision="fp32", dtype="float32", quantization=None, context=0, base_kind="local"):
    return {"release": {"name": "tiny", "relation": relation},
            "precision": {"name": precision, "dtype": dtype, "quantization": quantization},
            "base": {"kind": base_kind, "local_dir": "/models/tiny-base", "repo": "org/tiny",
                     "commit": "a" * 40 if base_kind == "hub" else None},
            "adapter": {"config": {"r": 12}}, "serving": {"context_length": context}}


INT8 = {"method": "bitsandbytes", "bits": 8, "threshold": 6.0}
NF4 = {"method": "bitsandbytes", "bits": 4, "quant_type": "nf4", "double_quant": True}
FP4 = {"method": "bitsandbytes", "bits": 4, "quant_type": "fp4", "double_quant": True}


def parse_transformers_serve(argv: list[str]):
    """transformers' own CLI parses the arguments (click context only: Serve() is not called)."""
    from transformers.cli.transformers import app  # a click group (huggingface_hub's typer factory)

    assert argv[:2] == ["transformers", "serve"]
    return app.commands["serve"].make_context("serve", list(argv[2:])).params


def check_flags(argv: list[str], known: set, value_free: set) -> dict:
    """Every flag is one the engine documents, and each valued flag has a value."""
    flags, index = {}, 0
    while index < len(argv):
        token = argv[index]
        if token.startswith("--"):
            assert token in known, f"{token} is not a documented flag"
            if token in value_free:
                flags[token] = True
            else:
                value = argv[index + 1]
                assert not value.startswith("--"), f"{token} has no value"
                flags[token] = value
                index += 1
        index += 1
    return flags


@pytest.mark.parametrize("quant", [None, INT8, NF4])
def test_transformers_serve_commands_parse_with_its_own_cli(quant, tmp_path):
    m = manifest(precision={None: "fp32", id(INT8): "int8", id(NF4): "nf4"}.get(quant and id(quant)) or "fp32",
                 quantization=quant, context=512)
    argv, refused = serve_argv(m, tmp_path / "v1", tmp_path)
    params = parse_transformers_serve(argv["transformers_serve"])
    assert params["force_model"] == str(tmp_path / "v1") and params["host"] == "127.0.0.1"
    assert params["port"] == 8000 and params["dtype"] == "float32" and params["max_model_len"] == 512
    assert params["quantization"] == {None: None, id(INT8): "bnb-8bit", id(NF4): "bnb-4bit"}[quant and id(quant)]
    assert "transformers_serve" not in refused


def test_an_int8_version_gets_no_vllm_or_sglang_command_but_the_reason_and_what_works(tmp_path):
    commands = serve_commands(manifest(precision="int8", quantization=INT8), tmp_path / "v1", tmp_path)
    assert commands["vllm"] is None and commands["sglang"] is None
    assert "4-bit NF4" in commands["refused"]["vllm"] and "int8" in commands["refused"]["vllm"]
    assert "--quantization bnb-8bit" in commands["refused"]["vllm"]        # what would work instead
    assert "--quantization bnb-8bit" in commands["transformers_serve"]
    from weightgate.core.release.card import serve_lines

    text = "\n".join(serve_lines(commands))
    assert "vLLM: no command: vLLM's in-flight bitsandbytes quantization is 4-bit NF4" in text
    assert "transformers serve" in text


def test_fp4_is_refused_by_every_engine_that_quantizes_in_flight(tmp_path):
    commands = serve_commands(manifest(precision="fp4", quantization=FP4), tmp_path / "v1", tmp_path)
    assert commands["vllm"] is None and commands["sglang"] is None and commands["transformers_serve"] is None
    assert "double quantization" in commands["refused"]["transformers_serve"]


def test_nf4_vllm_and_sglang_commands_use_documented_flags(tmp_path):
    argv, refused = serve_argv(manifest(precision="nf4", quantization=NF4, dtype="float16", context=1024),
                               tmp_path / "v1", tmp_path)
    assert not refused
    assert argv["vllm"][:3] == ["vllm", "serve", str(tmp_path / "v1")]
    vllm = check_flags(argv["vllm"][3:], VLLM_FLAGS, VLLM_VALUE_FREE)
    assert vllm["--quantization"] == "bitsandbytes" and vllm["--dtype"] == "float16"
    assert vllm["--max-model-len"] == "1024" and vllm["--served-model-name"] == "tiny"
    assert argv["sglang"][:3] == ["python", "-m", "sglang.launch_server"]
    sglang = check_flags(argv["sglang"][3:], SGLANG_FLAGS, SGLANG_VALUE_FREE)
    assert sglang["--model-path"] == str(tmp_path / "v1") and sglang["--context-length"] == "1024"


def test_an_adapter_is_served_under_a_name_distinct_from_its_base(tmp_path):
    version = tmp_path / "v2"
    argv, refused = serve_argv(manifest(relation="adapter", base_kind="hub"), version, tmp_path)
    vllm = check_flags(argv["vllm"][3:], VLLM_FLAGS, VLLM_VALUE_FREE)
    assert argv["vllm"][2] == "org/tiny" and vllm["--revision"] == "a" * 40
    assert vllm["--served-model-name"] == "tiny-base" and vllm["--lora-modules"] == f"tiny={version}"
    assert vllm["--max-lora-rank"] == "16"                       # r 12 -> the smallest rank vLLM accepts
    sglang = check_flags(argv["sglang"][3:], SGLANG_FLAGS, SGLANG_VALUE_FREE)
    assert sglang["--served-model-name"] == "tiny-base" and sglang["--lora-paths"] == f"tiny={version}"
    # transformers serve cannot load a PEFT directory: no command, and the way out.
    assert argv["transformers_serve"] is None and "--merge" in refused["transformers_serve"]
    # The shell form quotes what needs quoting and round-trips to the same argv.
    spaced = tmp_path / "with space" / "v2"
    commands = serve_commands(manifest(relation="adapter"), spaced, tmp_path)
    assert shlex.split(commands["vllm"]) == serve_argv(manifest(relation="adapter"), spaced, tmp_path)[0]["vllm"]
    assert Path(shlex.split(commands["vllm"])[2]) == Path("/models/tiny-base")


def test_the_serve_job_s_command_parses_with_and_without_continuous_batching(tmp_path):
    """`weightgate release serve [--continuous-batching]`: the job's own command line (the venv's
    interpreter running transformers' CLI) is accepted by transformers' parser either way."""
    import sys

    from weightgate.core.registry.store import VersionRef
    from weightgate.core.release.serve import server_command

    ref = VersionRef(name="demo", version="v1", path=tmp_path / "v1")
    for batching in (False, True):
        command = server_command(ref, manifest(context=512), "127.0.0.1", 8123, continuous_batching=batching)
        assert command[:4] == [sys.executable, "-m", "transformers.cli.transformers", "serve"]
        params = parse_transformers_serve(["transformers", *command[3:]])
        assert params["continuous_batching"] is batching and params["port"] == 8123
        assert params["force_model"] == str(tmp_path / "v1")
