"""Sources and metadata without downloading weights, against the loopback hub emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hub_emulator import (  # noqa: F401 - `hub` is a fixture
    LlamaShape,
    big_virtual_repo_files,
    hub,
    llama_config,
    llama_repo_files,
    llama_tensors,
)

from weightgate.core.engine.errors import InputError
from weightgate.core.weights.hub import resolve_revision
from weightgate.core.weights.metadata import fetch_metadata, sliding_window_of
from weightgate.core.weights.sources import (
    GGUF,
    HUB,
    LOCAL,
    HubError,
    parse_source,
    plan_files,
    size_class,
    weight_files,
)

REPO = "org/tiny-llama"


def expected_params(shape: LlamaShape | None = None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for dtype, dims in llama_tensors(shape or LlamaShape()).values():
        n = 1
        for d in dims:
            n *= d
        counts[dtype] = counts.get(dtype, 0) + n
    return counts


# --- parsing --------------------------------------------------------------------------------


def test_parse_hub_specs():
    source = parse_source("org/name")
    assert (source.kind, source.repo_id, source.revision, source.revision_or_default) == (HUB, "org/name", "", "main")
    source = parse_source("HuggingFaceTB/SmolLM2-135M-Instruct@v1.0")
    assert (source.repo_id, source.revision) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "v1.0")
    assert parse_source("a/b@refs/pr/1").revision == "refs/pr/1"
    assert str(parse_source("a/b@" + "f" * 40)) == "a/b@" + "f" * 40


@pytest.mark.parametrize("spec, needle", [
    ("", "empty"),
    ("justaname", "exactly one '/'"),
    ("a/b/c", "exactly one '/'"),
    ("-org/name", "malformed hub repo id"),
    ("org/na me", "malformed hub repo id"),
    ("org/name--x", "'--'"),
    ("org/name.git", "'.git'"),
    ("org/name@", "nothing after '@'"),
    ("org/name@../x", "malformed revision"),
    ("org/name@a b", "malformed revision"),
    ("./does/not/exist", "no such file or directory"),
    ("/nonexistent/model.gguf", "no such file or directory"),
    ("missing.gguf", "no such file or directory"),
])
def test_parse_rejects_with_clear_errors(spec, needle, tmp_path):
    with pytest.raises(InputError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        parse_source(spec, cwd=tmp_path)


def test_parse_local_directory_and_gguf(tmp_path):
    model = tmp_path / "org" / "name"
    model.mkdir(parents=True)
    assert parse_source(str(model)).kind == LOCAL
    # An org/name that exists under cwd is that directory (as transformers does).
    assert parse_source("org/name", cwd=tmp_path).kind == LOCAL
    gguf_file = tmp_path / "m.gguf"
    gguf_file.write_bytes(b"GGUF" + bytes(20))
    assert parse_source(str(gguf_file)).kind == GGUF
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a gguf")
    with pytest.raises(InputError, match="not a GGUF file"):
        parse_source(str(fake))
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(InputError, match="not .gguf"):
        parse_source(str(other))


# --- revisions ------------------------------------------------------------------------------


def test_resolve_revision_pins_branches_and_tags(hub):
    first = hub.commit(REPO, llama_repo_files())
    hub.tag(REPO, "v1")
    second = hub.commit(REPO, {"README.md": b"---\nlicense: mit\n---\n"})
    assert resolve_revision(REPO, endpoint=hub.url) == second
    assert resolve_revision(REPO, "main", endpoint=hub.url) == second
    assert resolve_revision(REPO, "v1", endpoint=hub.url) == first
    assert resolve_revision(REPO, first, endpoint=hub.url) == first
    assert resolve_revision(REPO, first[:8], endpoint=hub.url) == first
    with pytest.raises(HubError, match="has no revision 'nope'"):
        resolve_revision(REPO, "nope", endpoint=hub.url)
    with pytest.raises(HubError, match="no model repo org/missing"):
        resolve_revision("org/missing", endpoint=hub.url)


def test_unreachable_hub_is_a_clear_error():
    with pytest.raises(HubError, match="cannot reach"):
        resolve_revision(REPO, endpoint="http://127.0.0.1:9")


# --- hub metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize("hub", ["direct", "cdn"], indirect=True)
def test_metadata_from_headers_only(hub):
    files = llama_repo_files()
    sha = hub.commit(REPO, files)
    hub.clear_log()
    meta = fetch_metadata(REPO, endpoint=hub.url)
    assert meta.commit == sha
    assert meta.parameters == expected_params()           # exact, by dtype, from the headers
    assert meta.parameter_count == sum(expected_params().values())
    assert meta.bf16_bytes == 2 * meta.parameter_count
    assert meta.size_class == "<1B"
    assert meta.weight_format == "safetensors"
    assert meta.weight_files == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert (meta.architecture, meta.model_type) == ("LlamaForCausalLM", "llama")
    shape = LlamaShape()
    assert (meta.context_length, meta.num_layers, meta.num_attention_heads, meta.num_kv_heads, meta.head_dim,
            meta.hidden_size) == (shape.max_position_embeddings, shape.num_hidden_layers, shape.num_attention_heads,
                                  shape.num_key_value_heads, shape.head_dim, shape.hidden_size)
    assert meta.sliding_window is None
    assert meta.license == "apache-2.0"
    assert not meta.remote_code
    # Every file with its size; LFS files with their published sha256.
    import hashlib

    for name, data in files.items():
        info = meta.file(name)
        assert info is not None and info.size == len(data)
        if name.endswith((".safetensors", ".bin")):
            assert info.lfs and info.sha256 == hashlib.sha256(data).hexdigest()
    # Nothing but headers was read from the weights: ranged GETs only, a header's worth each.
    weight_bytes = sum(len(files[p]) for p in meta.weight_files)
    for record in hub.log_for(method="GET"):
        if record.filename and record.filename.endswith((".safetensors", ".bin")) and record.status != 302:
            assert record.range and record.status == 206 and record.body_bytes < 4096
    assert not hub.log_for("pytorch_model.bin")
    spent = sum(r.body_bytes for r in hub.requests)
    share = spent / weight_bytes
    print(f"\nmetadata bytes for the tiny sharded repo: {spent} of {weight_bytes} weight bytes = {share:.4%}")
    assert share <= 0.001
    assert meta.bytes_fetched <= spent


def test_metadata_share_for_a_realistic_sharded_model(hub):
    """A ~1.5B Llama in 4 shards (virtual bytes): metadata costs well under 0.1% of the weights."""
    shape = LlamaShape(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                       num_key_value_heads=8, head_dim=64, vocab_size=128256)
    hub.commit("org/big-llama", big_virtual_repo_files(shape, 4))
    hub.clear_log()
    meta = fetch_metadata("org/big-llama", endpoint=hub.url)
    assert meta.parameters == expected_params(shape)
    assert meta.size_class == "1-3B"
    spent = sum(r.body_bytes for r in hub.requests)
    share = spent / meta.weight_bytes
    print(f"\nmetadata bytes for a {meta.parameter_count / 1e9:.2f}B model in 4 shards: {spent} of "
          f"{meta.weight_bytes} = {share:.5%} ({len(hub.requests)} requests)")
    assert share <= 0.001


def test_metadata_when_the_server_ignores_range(hub):
    files = llama_repo_files()
    hub.commit(REPO, files)
    hub.fault("ignore_range")   # every GET answers 200 with the whole file
    meta = fetch_metadata(REPO, endpoint=hub.url)
    assert meta.parameters == expected_params()
    # We stop reading as soon as the header is in: far less than the 12 MB of weights.
    assert meta.bytes_fetched < 1_000_000


@pytest.mark.parametrize("damage, fault", [
    (lambda shard: shard + b"\0" * 8, "trailing_bytes"),            # the hub lists the longer size
    (lambda shard: shard[:8] + shard[8:].replace(b'"BF16"', b'"XX16"', 1), "unknown_dtype"),
])
def test_hostile_hub_header_gets_the_validators_fault(hub, damage, fault):
    from weightgate.core.weights.safetensors_format import SafetensorsError

    files = llama_repo_files(n_shards=1, with_pickle=False)
    files["model.safetensors"] = damage(files["model.safetensors"])
    hub.commit(REPO, files)
    with pytest.raises(SafetensorsError) as caught:
        fetch_metadata(REPO, endpoint=hub.url)
    assert caught.value.fault == fault and "model.safetensors" in str(caught.value)
    assert "hub's copy" in caught.value.hint


def test_pinned_commit_is_used_even_after_the_branch_moves(hub):
    first = hub.commit(REPO, llama_repo_files())
    hub.commit(REPO, {"config.json": json.dumps(llama_config(LlamaShape(), num_hidden_layers=99)).encode()})
    meta = fetch_metadata(REPO, commit=first, endpoint=hub.url)
    assert meta.commit == first and meta.num_layers == LlamaShape().num_hidden_layers
    assert fetch_metadata(REPO, endpoint=hub.url).num_layers == 99


def test_remote_code_from_auto_map_and_python_files(hub):
    files = llama_repo_files(config_extra={"auto_map": {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}})
    files["modeling_x.py"] = b"import os\nos.system('echo pwned')\n"
    hub.commit("org/custom", files)
    meta = fetch_metadata("org/custom", endpoint=hub.url)
    assert meta.remote_code
    assert any("auto_map" in r and "modeling_x.XForCausalLM" in r for r in meta.remote_code_reasons)
    assert any("modeling_x.py" in r for r in meta.remote_code_reasons)
    # Composite configs nest it (text_config.auto_map): still remote code.
    nested = llama_repo_files(config_extra={"text_config": {"auto_map": {"AutoModel": "m.X"}}})
    hub.commit("org/nested", nested)
    reasons = fetch_metadata("org/nested", endpoint=hub.url).remote_code_reasons
    assert reasons == ["config.json text_config.auto_map: AutoModel -> m.X"]
    # Python files alone are enough to flag it.
    plain = llama_repo_files()
    plain["tokenization_x.py"] = b"pass\n"
    hub.commit("org/pyfile", plain)
    assert fetch_metadata("org/pyfile", endpoint=hub.url).remote_code


@pytest.mark.parametrize("bad", ["../../x", "/etc/passwd", "a/../../b", "dir\\evil.json", "nul\x00.json",
                                 "./x", "a//b"])
def test_hostile_file_names_are_refused_by_name(hub, bad):
    files = llama_repo_files()
    files[bad] = b"payload"
    hub.commit("org/hostile", files)
    hub.clear_log()
    with pytest.raises(HubError, match="refusing unsafe file names") as caught:
        fetch_metadata("org/hostile", endpoint=hub.url)
    assert repr(bad) in str(caught.value)
    # Refused before any file was fetched.
    assert not [r for r in hub.requests if r.filename]


def test_license_from_readme_when_card_data_is_missing(hub):
    files = llama_repo_files()
    files["README.md"] = b"---\nlicense: other\nlicense_name: llama3\n---\n# x\n"
    hub.commit(REPO, files)
    hub.repos[REPO].info_overrides = {"cardData": None}
    meta = fetch_metadata(REPO, endpoint=hub.url)
    assert meta.license == "other: llama3"
    assert hub.log_for("README.md", method="GET")


def test_config_that_does_not_match_its_blob_id_is_refused(hub):
    hub.commit(REPO, llama_repo_files())
    hub.fault("wrong_bytes", "config.json")
    with pytest.raises(HubError, match="config.json does not match its published git blob id"):
        fetch_metadata(REPO, endpoint=hub.url)


def test_single_file_and_pickle_only_repos(hub):
    hub.commit("org/single", llama_repo_files(n_shards=1))
    meta = fetch_metadata("org/single", endpoint=hub.url)
    assert meta.weight_files == ["model.safetensors"] and meta.parameters == expected_params()
    hub.commit("org/pickled", {"config.json": json.dumps(llama_config(LlamaShape())).encode(),
                               "pytorch_model.bin": b"\x80\x04N.", "training_args.bin": b"\x80\x04N."})
    meta = fetch_metadata("org/pickled", endpoint=hub.url)
    assert meta.weight_format == "pickle" and meta.weight_files == ["pytorch_model.bin"]
    assert meta.parameters == {} and meta.size_class == "?"
    assert any("pickle" in w for w in meta.warnings)


# --- config details -------------------------------------------------------------------------


def test_head_dim_falls_back_to_hidden_over_heads():
    from weightgate.core.weights.metadata import ModelMetadata, _apply_config
    from weightgate.core.weights.sources import Source

    meta = ModelMetadata(source=Source(kind=HUB, spec="a/b", repo_id="a/b"))
    config = llama_config(LlamaShape())
    del config["head_dim"], config["num_key_value_heads"]
    _apply_config(meta, config)
    assert meta.head_dim == 256 // 8 and meta.num_kv_heads == 8


def test_text_config_of_a_multimodal_model():
    from weightgate.core.weights.metadata import ModelMetadata, _apply_config
    from weightgate.core.weights.sources import Source

    meta = ModelMetadata(source=Source(kind=HUB, spec="a/b", repo_id="a/b"))
    _apply_config(meta, {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
                         "text_config": {"num_hidden_layers": 12, "num_attention_heads": 4, "num_key_value_heads": 1,
                                         "head_dim": 256, "hidden_size": 1152, "max_position_embeddings": 32768,
                                         "sliding_window": 512, "sliding_window_pattern": 6}})
    assert (meta.num_layers, meta.num_kv_heads, meta.head_dim, meta.context_length) == (12, 1, 256, 32768)
    assert meta.sliding_window == 512
    assert meta.sliding_window_layers == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]


@pytest.mark.parametrize("config, layers, expected", [
    ({"sliding_window": 4096}, 4, (4096, [0, 1, 2, 3])),                                  # Mistral: every layer
    ({"sliding_window": None}, 4, (None, None)),
    ({"sliding_window": 4096, "use_sliding_window": False}, 4, (None, None)),             # Qwen2 default
    ({"sliding_window": 4096, "use_sliding_window": True, "max_window_layers": 2}, 4, (4096, [2, 3])),
    ({"sliding_window": 4096, "layer_types": ["sliding_attention", "full_attention"] * 2}, 4, (4096, [0, 2])),
    ({"sliding_window": 1024, "sliding_window_pattern": 2}, 4, (1024, [0, 2])),
    ({"sliding_window": 1024, "layer_types": ["full_attention"] * 4}, 4, (None, None)),
])
def test_sliding_window_layers(config, layers, expected):
    assert sliding_window_of(config, layers) == expected


def test_size_classes():
    assert [size_class(n) for n in (135e6, 1.5e9, 7e9, 8.03e9, 14e9, 32e9, 70e9)] == \
        ["<1B", "1-3B", "3-8B", "8-15B", "8-15B", "15-40B", ">40B"]


def test_plan_prefers_safetensors():
    paths = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
             "consolidated.safetensors", "pytorch_model.bin", "original/consolidated.00.pth", "config.json",
             "tokenizer.json", "tokenizer.model", "generation_config.json", "optimizer.pt", "rng_state.pth",
             "training_args.bin", "flax_model.msgpack", ".gitattributes", "modeling_x.py", "README.md"]
    wanted, skipped = plan_files(paths)
    assert wanted == sorted(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                             "model.safetensors.index.json", "config.json", "tokenizer.json", "tokenizer.model",
                             "generation_config.json", "README.md"])
    assert "safetensors are present" in skipped["pytorch_model.bin"]
    assert "training leftover" in skipped["optimizer.pt"]
    assert "remote code" in skipped["modeling_x.py"]
    assert "modeling_x.py" in plan_files(paths, include_remote_code=True)[0]
    # Without safetensors the pickle weights are the model (fetched to be scanned, not loaded).
    wanted, _ = plan_files(["pytorch_model.bin", "config.json", "training_args.bin"])
    assert wanted == ["config.json", "pytorch_model.bin"]
    assert weight_files(["a.safetensors", "consolidated.safetensors"]) == ["a.safetensors"]


# --- local sources --------------------------------------------------------------------------


def test_local_directory_metadata(tmp_path):
    files = llama_repo_files(config_extra={"auto_map": {"AutoConfig": "configuration_x.XConfig"}})
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    meta = fetch_metadata(str(tmp_path))
    assert meta.source.kind == LOCAL
    assert meta.parameters == expected_params()
    assert meta.license == "apache-2.0" and meta.remote_code
    assert meta.file("config.json").size == len(files["config.json"])
    assert meta.bytes_fetched == 0


def test_local_directory_with_a_broken_header(tmp_path):
    (tmp_path / "model.safetensors").write_bytes((10**6).to_bytes(8, "little") + b"{}")
    with pytest.raises(InputError, match="runs past the end of the file"):
        fetch_metadata(str(tmp_path))


def test_gguf_metadata(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(2048)
    writer.add_block_count(2)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_embedding_length(64)
    writer.add_string("general.license", "apache-2.0")
    writer.add_tensor("token_embd.weight", np.zeros((100, 64), dtype=np.float16))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((64, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    meta = fetch_metadata(str(path))
    assert meta.source.kind == GGUF and meta.weight_format == "gguf"
    assert (meta.architecture, meta.context_length, meta.num_layers, meta.num_attention_heads, meta.num_kv_heads,
            meta.head_dim) == ("llama", 2048, 2, 4, 2, 16)
    assert meta.license == "apache-2.0"
    assert meta.parameters == {"F16": 6400, "F32": 4096}


def test_metadata_to_dict_is_json(hub):
    hub.commit(REPO, llama_repo_files())
    data = fetch_metadata(REPO, endpoint=hub.url).to_dict()
    text = json.dumps(data)
    assert '"size_class": "<1B"' in text and data["source"]["display"] == REPO
    assert Path(__file__).exists()
