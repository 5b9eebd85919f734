"""The loopback hub emulator speaks what the real huggingface_hub client expects.

In-process calls pass `endpoint=hub.url` and `cache_dir=` explicitly: huggingface_hub reads
HF_ENDPOINT and HF_HUB_CACHE once, at import, and another test may have imported it first.
The subprocess test shows the environment route (HF_ENDPOINT set before import) works too.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from hub_emulator import (  # noqa: F401 - `hub` is a fixture
    HubEmulator,
    LlamaShape,
    _parse_range,
    git_blob_oid,
    hub,
    llama_repo_files,
    llama_tensors,
    serve,
)
from huggingface_hub import (
    HfApi,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

ROOT = Path(__file__).resolve().parents[3]
REPO = "org/tiny-llama"


@pytest.fixture
def repo(hub):
    files = llama_repo_files()
    sha = hub.commit(REPO, files)
    return hub, files, sha


def expected_params(shape: LlamaShape | None = None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for dtype, dims in llama_tensors(shape or LlamaShape()).values():
        n = 1
        for d in dims:
            n *= d
        counts[dtype] = counts.get(dtype, 0) + n
    return counts


def test_binds_loopback_only_and_stops():
    with serve() as emulator:
        host, port = emulator._server.server_address[:2]
        assert host == "127.0.0.1"
        with socket.create_connection((host, port), timeout=2):
            pass
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_model_info_with_files_metadata(repo):
    hub, files, sha = repo
    info = HfApi(endpoint=hub.url).model_info(REPO, files_metadata=True)
    assert info.sha == sha
    siblings = {s.rfilename: s for s in info.siblings}
    assert set(siblings) == set(files)
    shard = siblings["model-00001-of-00003.safetensors"]
    assert shard.lfs is not None and shard.lfs.sha256 == hashlib.sha256(files[shard.rfilename]).hexdigest()
    assert shard.size == len(files[shard.rfilename])
    config = siblings["config.json"]
    assert config.lfs is None and config.blob_id == git_blob_oid(files["config.json"])
    assert info.card_data.license == "apache-2.0"
    assert dict(info.safetensors.parameters) == expected_params()


def test_revisions_branches_tags(repo):
    hub, files, first = repo
    hub.tag(REPO, "v1.0")
    second = hub.commit(REPO, {"config.json": b"{}"})
    api = HfApi(endpoint=hub.url)
    assert api.model_info(REPO).sha == second
    assert api.model_info(REPO, revision="v1.0").sha == first
    assert api.model_info(REPO, revision=first).sha == first
    assert api.model_info(REPO, revision=first[:10]).sha == first
    refs = api.list_repo_refs(REPO)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": second}
    assert {t.name: t.target_commit for t in refs.tags} == {"v1.0": first}
    hub.set_ref(REPO, "main", first)   # a branch moved back
    assert api.model_info(REPO).sha == first
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="nope")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/missing")


def test_tree_and_list_files(hub):
    hub.commit("org/nested", {"a.json": b"{}", "sub/b.txt": b"b", "sub/deep/c.safetensors": b"c" * 10})
    api = HfApi(endpoint=hub.url)
    assert sorted(api.list_repo_files("org/nested")) == ["a.json", "sub/b.txt", "sub/deep/c.safetensors"]
    top = {e.path: type(e).__name__ for e in api.list_repo_tree("org/nested")}
    assert top == {"a.json": "RepoFile", "sub": "RepoFolder"}
    deep = [e for e in api.list_repo_tree("org/nested", recursive=True) if e.path.endswith(".safetensors")]
    assert deep[0].lfs is not None and deep[0].lfs.size == 10


def test_head_headers_for_lfs_and_git_files(repo):
    hub, files, sha = repo
    shard = "model-00002-of-00003.safetensors"
    meta = get_hf_file_metadata(hf_hub_url(REPO, shard, endpoint=hub.url))
    assert meta.commit_hash == sha
    assert meta.etag == hashlib.sha256(files[shard]).hexdigest()
    assert meta.size == len(files[shard])
    meta = get_hf_file_metadata(hf_hub_url(REPO, "config.json", endpoint=hub.url))
    assert meta.etag == git_blob_oid(files["config.json"])
    response = httpx2.head(hf_hub_url(REPO, shard, endpoint=hub.url))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["x-linked-size"] == str(len(files[shard]))


def test_range_requests(repo):
    hub, files, sha = repo
    shard = "model-00001-of-00003.safetensors"
    data = files[shard]
    url = hf_hub_url(REPO, shard, revision=sha, endpoint=hub.url)
    with httpx2.Client() as client:
        response = client.get(url, headers={"Range": "bytes=10-19"})
        assert response.status_code == 206 and response.content == data[10:20]
        assert response.headers["content-range"] == f"bytes 10-19/{len(data)}"
        assert client.get(url, headers={"Range": "bytes=-5"}).content == data[-5:]
        assert client.get(url, headers={"Range": f"bytes={len(data) - 3}-"}).content == data[-3:]
        assert client.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
    assert _parse_range("bytes=0-100000", 50) == (0, 50)   # clamped, like the hub


def test_hf_hub_download_and_snapshot_into_standard_cache(repo, tmp_path):
    hub, files, sha = repo
    cache = tmp_path / "cache"
    path = Path(hf_hub_download(REPO, "config.json", cache_dir=cache, endpoint=hub.url))
    assert path == cache / "models--org--tiny-llama" / "snapshots" / sha / "config.json"
    assert path.is_symlink() and path.read_bytes() == files["config.json"]
    assert (cache / "models--org--tiny-llama" / "refs" / "main").read_text() == sha
    folder = Path(snapshot_download(REPO, cache_dir=cache, endpoint=hub.url, allow_patterns=["*.safetensors"]))
    for name in ("model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors"):
        assert (folder / name).read_bytes() == files[name]


def test_get_safetensors_metadata_uses_ranges(repo):
    hub, files, sha = repo
    hub.clear_log()
    meta = HfApi(endpoint=hub.url).get_safetensors_metadata(REPO)
    assert meta.sharded and meta.parameter_count == expected_params()
    shard_gets = [r for r in hub.log_for(method="GET") if r.filename and r.filename.endswith(".safetensors")]
    assert shard_gets and all(r.status == 206 and r.range for r in shard_gets)


def test_faults_seen_through_the_client(repo, tmp_path):
    hub, files, sha = repo
    cache = tmp_path / "cache"
    hub.fault("no_commit", "config.json", method="HEAD")
    with pytest.raises(LocalEntryNotFoundError, match="X-Repo-Commit"):
        hf_hub_download(REPO, "config.json", cache_dir=cache, endpoint=hub.url)
    hub.clear_faults()
    hub.fault("no_etag", "config.json", method="HEAD")
    with pytest.raises(LocalEntryNotFoundError, match="ETag"):
        hf_hub_download(REPO, "config.json", cache_dir=cache, endpoint=hub.url)
    hub.clear_faults()
    hub.fault("status", "config.json", status=500, method=None)
    with pytest.raises(Exception):
        get_hf_file_metadata(hf_hub_url(REPO, "config.json", endpoint=hub.url))


def test_plain_client_stores_wrong_bytes_of_the_right_length(repo, tmp_path):
    """Why core.weights.download verifies hashes itself: the client's HTTP path checks only the size."""
    hub, files, sha = repo
    shard = "model-00003-of-00003.safetensors"
    hub.fault("wrong_bytes", shard)
    path = Path(hf_hub_download(REPO, shard, cache_dir=tmp_path / "cache", endpoint=hub.url))
    data = path.read_bytes()
    assert len(data) == len(files[shard]) and data != files[shard]


def test_short_body_and_drop_break_the_connection(repo):
    hub, files, sha = repo
    shard = "model-00001-of-00003.safetensors"
    url = hf_hub_url(REPO, shard, revision=sha, endpoint=hub.url)
    for kind in ("short_body", "drop"):
        hub.clear_faults()
        hub.fault(kind, shard, at=1000, times=1)
        with pytest.raises((httpx2.RemoteProtocolError, httpx2.ReadError)):
            with httpx2.stream("GET", url) as response:
                for _ in response.iter_raw():
                    pass
        # The fault was used up: the next request is whole.
        assert httpx2.get(url).content == files[shard]


def test_ignore_range_and_no_size(repo):
    hub, files, sha = repo
    shard = "model-00001-of-00003.safetensors"
    url = hf_hub_url(REPO, shard, revision=sha, endpoint=hub.url)
    hub.fault("ignore_range", shard, times=1)
    response = httpx2.get(url, headers={"Range": "bytes=100-"})
    assert response.status_code == 200 and response.content == files[shard]
    hub.fault("no_size", shard, times=1, method="HEAD")
    head = httpx2.head(url)
    assert "content-length" not in head.headers and "x-linked-size" not in head.headers


def test_hf_endpoint_from_environment_in_a_fresh_process(repo):
    hub, files, sha = repo
    code = ("from huggingface_hub import HfApi, constants; "
            "print(constants.ENDPOINT); print(HfApi().model_info('org/tiny-llama').sha)")
    import os

    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [hub.url, sha]


def test_hostile_names_are_listed_as_is(hub):
    hostile = ["../../x", "/etc/passwd", "a/../../b", "a\\b", "nul\x00name"]
    hub.commit("org/hostile", {**{name: b"x" for name in hostile}, "config.json": b"{}"})
    siblings = [s.rfilename for s in HfApi(endpoint=hub.url).model_info("org/hostile").siblings]
    assert set(hostile) <= set(siblings)


def test_request_log_counts_body_bytes(repo):
    hub, files, sha = repo
    hub.clear_log()
    url = hf_hub_url(REPO, "config.json", revision=sha, endpoint=hub.url)
    assert json.loads(httpx2.get(url).content) == json.loads(files["config.json"])
    (record,) = hub.log_for("config.json")
    assert record.body_bytes == len(files["config.json"]) and record.status == 200


def test_emulator_is_reusable_standalone():
    emulator = HubEmulator().start()
    try:
        emulator.commit("a/b", {"x.json": b"{}"})
        assert HfApi(endpoint=emulator.url).model_info("a/b").sha
    finally:
        emulator.stop()


def test_cdn_route_like_the_real_hub(tmp_path):
    """LFS files: a 302 carrying the hub headers to another origin that serves the bytes."""
    with serve(cdn=True) as emulator:
        files = llama_repo_files()
        sha = emulator.commit(REPO, files)
        shard = "model-00001-of-00003.safetensors"
        url = hf_hub_url(REPO, shard, endpoint=emulator.url)
        response = httpx2.head(url)
        assert response.status_code == 302 and response.headers["x-repo-commit"] == sha
        assert response.headers["location"].startswith("http://localhost:")
        meta = get_hf_file_metadata(url)   # not followed: another origin, as with the real CDN
        assert (meta.commit_hash, meta.etag, meta.size) == (sha, hashlib.sha256(files[shard]).hexdigest(),
                                                              len(files[shard]))
        path = hf_hub_download(REPO, shard, cache_dir=tmp_path / "cache", endpoint=emulator.url)
        assert Path(path).read_bytes() == files[shard]
        cdn_gets = [r for r in emulator.log_for(shard, method="GET") if r.path.startswith("/cdn/")]
        assert cdn_gets and cdn_gets[-1].status == 200
        assert HfApi(endpoint=emulator.url).get_safetensors_metadata(REPO).parameter_count == expected_params()
