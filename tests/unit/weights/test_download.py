"""Verified downloads through the real huggingface_hub client's building blocks, against the
loopback hub emulator playing the hub's failures. Every fault ends in a clear error, and the
failing file is never where the cache (or the lock) would treat it as complete."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
from hub_emulator import hub, llama_repo_files  # noqa: F401 - `hub` is a fixture
from huggingface_hub import hf_hub_download, snapshot_download

from weightgate.core.engine.errors import InputError
from weightgate.core.engine.events import read_events
from weightgate.core.engine.jobs import follow_job, read_status, start_job
from weightgate.core.engine.lock import HASH_COMPUTED, HASH_PUBLISHED, changed_on_disk, read_lock
from weightgate.core.engine.workspace import init_workspace
from weightgate.core.weights.download import BranchMovedError, download_model
from weightgate.core.weights.sources import HubError
from weightgate.core.weights.transfer import DownloadError, DownloadStopped, IntegrityError

REPO = "org/tiny-llama"
STORE = "models--org--tiny-llama"
SHARD = "model-00002-of-00003.safetensors"
KIND = "download"
FAST = {"retry_wait_s": 0.01, "max_attempts": 3}


@pytest.fixture
def repo(hub):
    files = llama_repo_files()
    sha = hub.commit(REPO, files)
    return hub, files, sha


def fetch(hub, spec=REPO, **kwargs):
    return download_model(spec, endpoint=hub.url, cache_dir=hub.cache_dir, **{**FAST, **kwargs})


def blob_of(hub, data: bytes) -> Path:
    return hub.cache_dir / STORE / "blobs" / hashlib.sha256(data).hexdigest()


def pointer(hub, sha: str, name: str) -> Path:
    return hub.cache_dir / STORE / "snapshots" / sha / name


def assert_not_complete(hub, files, sha, name):
    """The failing file is nowhere the client (or we) would count as complete."""
    assert not blob_of(hub, files[name]).exists()
    assert not pointer(hub, sha, name).exists() and not pointer(hub, sha, name).is_symlink()


# --- the good path --------------------------------------------------------------------------


BOTH_ROUTES = pytest.mark.parametrize("hub", ["direct", "cdn"], indirect=True)


@BOTH_ROUTES
def test_download_verifies_every_file_into_the_standard_cache(repo):
    hub, files, sha = repo
    hub.clear_log()
    updates = []
    result = fetch(hub, on_progress=updates.append)
    assert result.commit == sha and result.revision == "main"
    assert Path(result.snapshot_dir) == hub.cache_dir / STORE / "snapshots" / sha
    got = {f.path: f for f in result.files}
    assert set(got) == {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                        "special_tokens_map.json", "README.md", "model.safetensors.index.json",
                        "model-00001-of-00003.safetensors", SHARD, "model-00003-of-00003.safetensors"}
    for name, entry in got.items():
        assert entry.sha256 == hashlib.sha256(files[name]).hexdigest()
        assert entry.size == len(files[name]) and entry.verified_at > 0
        assert entry.hash_source == (HASH_PUBLISHED if name.endswith(".safetensors") else HASH_COMPUTED)
        assert pointer(hub, sha, name).is_symlink() and pointer(hub, sha, name).read_bytes() == files[name]
    # Only what is needed: the pickles were never requested.
    assert not hub.log_for("pytorch_model.bin") and not hub.log_for("training_args.bin")
    assert "safetensors are present" in result.skipped["pytorch_model.bin"]
    assert (hub.cache_dir / STORE / "refs" / "main").read_text() == sha
    assert not list((hub.cache_dir / STORE / "blobs").glob("*.incomplete"))
    # Per-file and total progress, ending complete.
    assert {u.scope for u in updates} == {"file", "total"}
    assert updates[-1].scope == "total" and updates[-1].done == updates[-1].total == result.bytes_downloaded
    assert any(u.scope == "file" and u.path == SHARD and u.state == "verified" for u in updates)
    # The client reads our cache back without the network.
    hub.clear_log()
    cached = hf_hub_download(REPO, SHARD, revision=sha, cache_dir=hub.cache_dir, endpoint=hub.url)
    assert Path(cached).read_bytes() == files[SHARD]
    folder = snapshot_download(REPO, cache_dir=hub.cache_dir, local_files_only=True)
    assert Path(folder) == Path(result.snapshot_dir)
    assert not hub.requests


def test_second_run_reuses_verified_files_and_replaces_a_tampered_one(repo):
    hub, files, sha = repo
    fetch(hub)
    hub.clear_log()
    again = fetch(hub)
    assert again.bytes_downloaded == 0 and all(f.reused for f in again.files)
    # HEADs only, besides the small metadata files (config.json).
    assert {r.filename for r in hub.log_for(method="GET") if r.filename} <= {"config.json"}
    # Same length, wrong bytes, planted in the cache: detected by hash, deleted, downloaded again.
    blob = blob_of(hub, files[SHARD])
    tampered = bytearray(blob.read_bytes())
    tampered[100] ^= 0xFF
    blob.write_bytes(bytes(tampered))
    third = fetch(hub)
    entry = next(f for f in third.files if f.path == SHARD)
    assert not entry.reused and blob.read_bytes() == files[SHARD]


def test_pinned_sha_as_the_revision_ignores_branch_moves(repo):
    hub, files, sha = repo
    hub.commit(REPO, {"config.json": b'{"model_type": "llama"}'})
    result = fetch(hub, f"{REPO}@{sha}")
    assert result.commit == sha and not (hub.cache_dir / STORE / "refs" / sha).exists()


# --- faults ---------------------------------------------------------------------------------


@BOTH_ROUTES
def test_wrong_bytes_of_the_right_length_fail_naming_the_file(repo):
    hub, files, sha = repo
    hub.fault("wrong_bytes", SHARD)
    with pytest.raises(IntegrityError, match=f"{SHARD} failed verification: sha256 .* published") as caught:
        fetch(hub)
    assert "not marked verified" in str(caught.value)
    assert_not_complete(hub, files, sha, SHARD)
    bad_partial = blob_of(hub, files[SHARD]).name + ".incomplete"
    assert not (hub.cache_dir / STORE / "blobs" / bad_partial).exists()   # bad bytes are not kept
    assert (hub.cache_dir / STORE / "refs" / "main").exists() is False


def test_wrong_bytes_in_a_small_git_file_fail_on_its_git_blob_id(repo):
    hub, files, sha = repo
    fetch(hub, include=[])   # a first good run, then a later commit's tokenizer is served corrupted
    new = hub.commit(REPO, {"tokenizer.json": b'{"version": "2.0"}'})
    hub.fault("wrong_bytes", "tokenizer.json")
    with pytest.raises(DownloadError, match="tokenizer.json"):
        fetch(hub)
    assert not pointer(hub, new, "tokenizer.json").exists()


def test_short_body_fails_clearly_then_a_later_run_resumes(repo):
    hub, files, sha = repo
    cut = len(files[SHARD]) // 3
    hub.fault("short_body", SHARD, at=cut)    # every attempt stops at the same byte
    with pytest.raises(DownloadError, match=f"{SHARD}: stopped at byte {cut} of {len(files[SHARD])}"):
        fetch(hub)
    assert_not_complete(hub, files, sha, SHARD)
    partial = blob_of(hub, files[SHARD]).with_name(blob_of(hub, files[SHARD]).name + ".incomplete")
    assert partial.stat().st_size == cut      # kept for the resume, under a name the cache ignores
    hub.clear_faults()
    hub.clear_log()
    result = fetch(hub)
    entry = next(f for f in result.files if f.path == SHARD)
    assert entry.resumed_from == cut and blob_of(hub, files[SHARD]).read_bytes() == files[SHARD]
    (get,) = hub.log_for(SHARD, method="GET")
    assert get.range == f"bytes={cut}-" and get.status == 206 and get.body_bytes == len(files[SHARD]) - cut


@BOTH_ROUTES
def test_dropped_connection_resumes_with_a_range_request(repo):
    hub, files, sha = repo
    hub.fault("drop", SHARD, at=1_000_000, times=1)
    logs = []
    result = fetch(hub, on_log=logs.append)
    assert blob_of(hub, files[SHARD]).read_bytes() == files[SHARD]
    gets = [g for g in hub.log_for(SHARD, method="GET") if g.status != 302]   # the bytes, wherever served
    assert [g.status for g in gets] == [200, 206]
    assert gets[1].range and gets[1].range.startswith("bytes=") and gets[1].range != "bytes=0-"
    entry = next(f for f in result.files if f.path == SHARD)
    assert entry.attempts == 2 and entry.hash_source == HASH_PUBLISHED
    assert any("resuming" in line for line in logs)


def test_server_that_ignores_range_restarts_the_file(repo):
    hub, files, sha = repo
    hub.fault("drop", SHARD, at=1_000_000, times=1)
    hub.fault("ignore_range", SHARD)
    logs = []
    fetch(hub, on_log=logs.append)
    gets = hub.log_for(SHARD, method="GET")
    assert len(gets) == 2 and gets[1].range and gets[1].status == 200
    assert any("ignored Range" in line for line in logs)
    assert blob_of(hub, files[SHARD]).read_bytes() == files[SHARD]


def test_branch_moved_after_pinning_is_refused(repo):
    hub, files, pinned = repo
    moved = hub.commit(REPO, {"config.json": b'{"model_type": "llama", "evil": true}'})
    with pytest.raises(BranchMovedError, match=f"'main' moved from the pinned commit {pinned[:12]} to {moved[:12]}"):
        fetch(hub, commit=pinned)
    assert not (hub.cache_dir / STORE / "snapshots" / pinned).exists() or not any(
        (hub.cache_dir / STORE / "snapshots" / pinned).iterdir())


def test_branch_moved_during_the_download_is_refused(repo):
    hub, files, pinned = repo
    new = hub.commit(REPO, {"README.md": b"---\nlicense: mit\n---\n"}, branch="next")
    hub.set_ref(REPO, "next", new)
    state = {"moved": False}

    def move_after_metadata(record):
        # The first HEAD of a file: the pin was checked, the files listed; now main moves.
        if record.method == "HEAD" and not state["moved"]:
            state["moved"] = True
            hub.set_ref(REPO, "main", new)

    hub.hooks.append(move_after_metadata)
    with pytest.raises(BranchMovedError, match="moved from the pinned commit"):
        fetch(hub, commit=pinned, workers=1)


@BOTH_ROUTES
@pytest.mark.parametrize("kind, needle", [
    ("no_commit", "no X-Repo-Commit header"),
    ("no_etag", "no ETag"),
    ("no_size", "no size"),
])
def test_missing_headers_are_refused(repo, kind, needle):
    hub, files, sha = repo
    hub.fault(kind, SHARD, method=None)
    with pytest.raises(DownloadError, match=f"{SHARD}: the server sent {needle}"):
        fetch(hub)
    assert_not_complete(hub, files, sha, SHARD)


@pytest.mark.parametrize("bad", ["../../x", "/etc/passwd", "a/../../b", "a\\b", "x\x00y"])
def test_hostile_file_names_are_refused_before_any_download(hub, bad):
    files = llama_repo_files()
    files[bad] = b"payload"
    hub.commit("org/hostile", files)
    hub.clear_log()
    with pytest.raises(HubError, match="refusing unsafe file names") as caught:
        download_model("org/hostile", endpoint=hub.url, cache_dir=hub.cache_dir, **FAST)
    assert repr(bad) in str(caught.value)
    assert not [r for r in hub.requests if r.filename]
    assert not (hub.cache_dir / "models--org--hostile" / "blobs").exists() or not any(
        (hub.cache_dir / "models--org--hostile" / "blobs").iterdir())


def test_remote_code_needs_consent_at_the_pinned_commit(hub):
    files = llama_repo_files(config_extra={"auto_map": {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}})
    files["modeling_x.py"] = b"class XForCausalLM: pass\n"
    sha = hub.commit("org/custom", files)
    with pytest.raises(InputError, match="ships remote code, refused without consent: config.json auto_map"):
        download_model("org/custom", endpoint=hub.url, cache_dir=hub.cache_dir, **FAST)
    with pytest.raises(InputError, match="refused without consent"):
        download_model("org/custom", endpoint=hub.url, cache_dir=hub.cache_dir, trust_remote_code_at="0" * 40,
                       **FAST)
    result = download_model("org/custom", endpoint=hub.url, cache_dir=hub.cache_dir, trust_remote_code_at=sha,
                            **FAST)
    assert result.remote_code and "modeling_x.py" in {f.path for f in result.files}


def test_server_errors_are_retried_then_reported(repo):
    hub, files, sha = repo
    hub.fault("status", SHARD, status=503, times=1, method="GET")
    fetch(hub)
    assert [r.status for r in hub.log_for(SHARD, method="GET")] == [503, 200]
    hub.clear_faults()
    hub.fault("status", "tokenizer.json", status=500, method=None)
    shutil.rmtree(hub.cache_dir / STORE)
    with pytest.raises(DownloadError, match="tokenizer.json: giving up after 3 attempts: HTTP 500"):
        fetch(hub)


def test_stop_request_keeps_partials_for_resume(repo):
    hub, files, sha = repo
    hub.fault("slow", SHARD, delay=0.02)
    under_way = []

    def watch(update):
        if update.path == SHARD and update.done > 100_000:
            under_way.append(update.done)

    with pytest.raises(DownloadStopped):
        fetch(hub, on_progress=watch, should_stop=lambda: bool(under_way))
    assert_not_complete(hub, files, sha, SHARD)
    partial = blob_of(hub, files[SHARD]).with_name(blob_of(hub, files[SHARD]).name + ".incomplete")
    assert 0 < partial.stat().st_size < len(files[SHARD])


# --- the detached job -----------------------------------------------------------------------


def run_job(ws, params, timeout=60):
    handle = start_job(ws.jobs_dir, KIND, params, workspace=ws.root)
    deadline = time.monotonic() + timeout
    events = list(follow_job(handle.job_dir, poll_s=0.05, stop=lambda: time.monotonic() > deadline))
    return handle, read_status(handle.job_dir), events


def test_download_job_end_to_end(repo, tmp_path):
    hub, files, sha = repo
    ws = init_workspace(tmp_path / "ws")
    # The job process finds the emulator through HF_ENDPOINT / HF_HUB_CACHE (set by the fixture).
    handle, status, events = run_job(ws, {"source": REPO, "commit": sha, **FAST})
    assert status.state == "succeeded", (status.error, (handle.job_dir / "stderr.log").read_text()[-2000:])
    progress = [e.payload for e in events if e.kind == "progress"]
    assert any(p["scope"] == "file" and p["file"] == SHARD and p["unit"] == "B" for p in progress)
    totals = [p for p in progress if p["scope"] == "total"]
    assert totals[-1]["done"] == totals[-1]["total"] > 10_000_000 and "rate_bps" in totals[-1]
    result = events[-1]
    assert result.kind == "result" and result.payload["data"]["commit"] == sha
    assert {e.payload.get("label") for e in events if e.kind == "artifact"} == {"snapshot", "lock"}
    assert any("skipped pytorch_model.bin" in e.payload["message"] for e in events if e.kind == "log")

    lock = read_lock(ws)
    assert (lock.kind, lock.source, lock.revision, lock.commit) == ("hub", REPO, "main", sha)
    assert lock.local_dir == str(hub.cache_dir / STORE / "snapshots" / sha)
    assert lock.license == "apache-2.0" and lock.remote_code is False
    entries = {f.path: f for f in lock.files}
    assert entries[SHARD].sha256 == hashlib.sha256(files[SHARD]).hexdigest()
    assert entries[SHARD].hash_source == HASH_PUBLISHED and entries["config.json"].hash_source == HASH_COMPUTED
    assert all(f.verified_at > 0 for f in lock.files)
    assert changed_on_disk(lock, Path(lock.local_dir)) == []
    # No token or other secret in anything the job wrote.
    assert "token" not in json.loads((handle.job_dir / "spec.json").read_text())["params"]


def test_download_job_failure_names_the_file_and_writes_no_lock(repo, tmp_path):
    hub, files, sha = repo
    ws = init_workspace(tmp_path / "ws")
    hub.fault("wrong_bytes", SHARD)
    handle, status, events = run_job(ws, {"source": REPO, **FAST})
    assert status.state == "failed"
    assert SHARD in status.error and "failed verification" in status.error
    errors = [e for e in events if e.kind == "error"]
    assert errors and SHARD in errors[0].payload["message"]
    assert read_lock(ws) is None
    assert_not_complete(hub, files, sha, SHARD)


def test_download_job_refuses_a_token_param(repo, tmp_path):
    hub, files, sha = repo
    ws = init_workspace(tmp_path / "ws")
    handle, status, events = run_job(ws, {"source": REPO, "token": "hf_secret"})
    assert status.state == "failed" and "must not be passed" in status.error
    assert read_lock(ws) is None


def test_download_job_progress_is_in_the_journal_while_it_runs(repo, tmp_path):
    hub, files, sha = repo
    ws = init_workspace(tmp_path / "ws")
    hub.fault("slow", SHARD, delay=0.01)
    handle = start_job(ws.jobs_dir, KIND, {"source": REPO, **FAST}, workspace=ws.root)
    seen_running_progress = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = read_status(handle.job_dir)
        events, _ = read_events(handle.job_dir / "events.jsonl")
        if status.state == "running" and any(e.kind == "progress" and e.payload.get("file") == SHARD
                                             for e in events):
            seen_running_progress = True
        if status.is_terminal:
            break
        time.sleep(0.05)
    assert status.state == "succeeded" and seen_running_progress


def test_cancelled_download_job_keeps_partials_and_the_next_run_resumes(repo, tmp_path):
    from weightgate.core.engine.jobs import cancel_job

    hub, files, sha = repo
    ws = init_workspace(tmp_path / "ws")
    slow = hub.fault("slow", SHARD, delay=0.02)
    handle = start_job(ws.jobs_dir, KIND, {"source": REPO, **FAST}, workspace=ws.root)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:   # wait until the shard is under way
        events, _ = read_events(handle.job_dir / "events.jsonl")
        if any(e.kind == "progress" and e.payload.get("file") == SHARD and e.payload["done"] > 200_000
               for e in events):
            break
        time.sleep(0.05)
    outcome = cancel_job(handle.job_dir, grace_s=15)
    assert outcome.status.state == "cancelled" and not outcome.killed
    assert read_lock(ws) is None
    assert_not_complete(hub, files, sha, SHARD)
    partial = blob_of(hub, files[SHARD]).with_name(blob_of(hub, files[SHARD]).name + ".incomplete")
    kept = partial.stat().st_size
    assert 0 < kept < len(files[SHARD])
    slow.times = 0   # the network is fast again
    hub.clear_log()
    handle, status, events = run_job(ws, {"source": REPO, "commit": sha, **FAST})
    assert status.state == "succeeded"
    (get,) = hub.log_for(SHARD, method="GET")
    assert get.range == f"bytes={kept}-" and get.status == 206
    assert read_lock(ws).commit == sha


def test_download_job_takes_remote_code_consent_from_weightgate_toml(hub, tmp_path):
    from weightgate.core.weights.pickle_policy import trust_remote_code

    files = llama_repo_files(config_extra={"auto_map": {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}})
    files["modeling_x.py"] = b"class XForCausalLM: pass\n"
    sha = hub.commit("org/custom", files)
    ws = init_workspace(tmp_path / "ws")
    handle, status, events = run_job(ws, {"source": "org/custom", **FAST})
    assert status.state == "failed" and "refused without consent" in status.error
    assert read_lock(ws) is None
    trust_remote_code(ws, "org/custom", sha, note="reviewed modeling_x.py")
    handle, status, events = run_job(ws, {"source": "org/custom", **FAST})
    assert status.state == "succeeded", status.error
    lock = read_lock(ws)
    assert lock.remote_code is True and lock.file("modeling_x.py") is not None


# --- a cache filled by huggingface_hub itself -----------------------------------------------


@pytest.mark.parametrize("how", ["snapshot_download", "hf_hub_download"])
def test_a_cache_filled_by_the_hf_client_is_reused_with_nothing_downloaded(repo, how):
    """The standard cache is shared: files huggingface_hub put there (blobs named by ETag,
    snapshot symlinks, refs/main) are hashed against the published sha256 and reused; not one
    weight byte is fetched again, and the result is the same snapshot directory."""
    hub, files, sha = repo
    from weightgate.core.weights.sources import plan_files

    wanted, skipped = plan_files(files)     # what weightgate fetches: no pickles, no .gitattributes
    assert "pytorch_model.bin" in skipped and SHARD in wanted
    if how == "snapshot_download":
        folder = snapshot_download(REPO, revision="main", cache_dir=hub.cache_dir, endpoint=hub.url,
                                   allow_patterns=wanted)
    else:
        folder = None
        for name in wanted:
            path = hf_hub_download(REPO, name, revision="main", cache_dir=hub.cache_dir, endpoint=hub.url)
            folder = folder or str(Path(path).parent)
    assert Path(folder) == hub.cache_dir / STORE / "snapshots" / sha
    assert blob_of(hub, files[SHARD]).is_file()      # the client names LFS blobs by their sha256
    hub.clear_log()

    result = fetch(hub)
    assert result.bytes_downloaded == 0, [f.path for f in result.files if not f.reused]
    assert all(f.reused for f in result.files)
    assert result.bytes_reused == sum(len(files[f.path]) for f in result.files)
    assert {f.path for f in result.files} == set(wanted)
    assert Path(result.snapshot_dir) == Path(folder)
    assert all(f.sha256 == hashlib.sha256(files[f.path]).hexdigest() for f in result.files)
    # No weight byte moved: HEADs only, besides the small metadata files read from the hub.
    assert not [r for r in hub.log_for(method="GET") if r.filename and r.filename.endswith(".safetensors")]
