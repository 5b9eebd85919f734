"""Talking to the hub: the endpoint, pinning a revision to a commit, the file list with published
hashes, small files checked against their git blob ids, and HTTP range reads of safetensors
headers. huggingface_hub is imported inside the functions that talk to the hub: importing this
module stays cheap.
"""

from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from urllib.parse import quote

from weightgate.core.engine.errors import InputError
from weightgate.core.weights.safetensors_format import SafetensorsError, SafetensorsInfo, header_length, validate_header
from weightgate.core.weights.sources import (
    DEFAULT_REVISION,
    FileInfo,
    HubError,
    check_repo_id,
    check_repo_paths,
    check_revision,
    is_commit,
)

HEADER_PROBE_MAX = 64 * 1024            # first range request: at most this much
HEADER_PROBE_SHARE = 10_000             # ... and at most 0.01% of the shard
CONFIG_MAX_BYTES = 4 * 1024 * 1024
README_MAX_BYTES = 256 * 1024
HTTP_TIMEOUT_S = 30.0


def hub_endpoint(endpoint: str | None = None) -> str:
    """The hub to talk to. HF_ENDPOINT is read now, not at import (huggingface_hub reads it
    once at import), so a process that set it late still goes where it asked."""
    from huggingface_hub import constants  # lazy: huggingface_hub only where it runs, never at import

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


class _Counter:
    def __init__(self) -> None:
        self.bytes = 0

    def add(self, count: int) -> None:
        self.bytes += count   # += on an int under the GIL; metadata fetches are few


def _hub_headers(token: str | bool | None) -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers  # lazy: huggingface_hub only where it runs, never at import

    # The token goes into the request header only; it is never logged or stored by us.
    return build_hf_headers(token=token, library_name="weightgate")


class _hub_errors:
    """Turn the client's exceptions into HubError with the repo and revision named."""

    def __init__(self, repo_id: str, revision: str, endpoint: str, what: str = "") -> None:
        self.repo_id, self.revision, self.endpoint, self.what = repo_id, revision, endpoint, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, InputError):
            return False
        import httpx2  # lazy: the hub's HTTP client, only when a request failed
        from huggingface_hub import errors as hf_errors  # lazy: huggingface_hub only where it runs, never at import

        where = f"{self.repo_id}@{self.revision}" + (f" ({self.what})" if self.what else "")
        if isinstance(exc, hf_errors.GatedRepoError):
            raise HubError(f"{self.repo_id} is gated: accept its terms on the hub and log in",
                           hint="`hf auth login`, or set HF_TOKEN") from None
        if isinstance(exc, hf_errors.RepositoryNotFoundError):
            raise HubError(f"no model repo {self.repo_id} on {self.endpoint} (or it is private)",
                           hint="check the name; for a private repo log in (`hf auth login` or HF_TOKEN)") from None
        if isinstance(exc, hf_errors.RevisionNotFoundError):
            raise HubError(f"{self.repo_id} has no revision {self.revision!r}",
                           hint="give an existing branch, tag or commit sha") from None
        if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
            raise HubError(f"{where}: file not found on the hub") from None
        if isinstance(exc, hf_errors.HfHubHTTPError):
            status = exc.response.status_code if exc.response is not None else "?"
            raise HubError(f"{where}: the hub answered HTTP {status}",
                           hint="try again later; if it persists, check HF_ENDPOINT") from None
        if isinstance(exc, (httpx2.TransportError, OSError)):
            raise HubError(f"{where}: cannot reach {self.endpoint}: {type(exc).__name__}: {exc}",
                           hint="check the network (and HF_ENDPOINT / proxy settings), then retry") from None
        return False


def resolve_revision(repo_id: str, revision: str | None = None, *, endpoint: str | None = None,
                     token: str | bool | None = None) -> str:
    """The 40-hex commit a branch, tag or (short) sha points to now: the pin."""
    check_repo_id(repo_id)
    revision = revision or DEFAULT_REVISION
    check_revision(revision)
    endpoint = hub_endpoint(endpoint)
    from huggingface_hub import HfApi  # lazy: huggingface_hub only where it runs, never at import

    with _hub_errors(repo_id, revision, endpoint, "resolving the revision"):
        info = HfApi(endpoint=endpoint, token=token, library_name="weightgate").model_info(
            repo_id, revision=revision, expand=["sha"], timeout=HTTP_TIMEOUT_S)
    sha = getattr(info, "sha", None)
    if not isinstance(sha, str) or not is_commit(sha):
        raise HubError(f"{repo_id}@{revision}: the hub gave no commit sha ({sha!r})",
                       hint="is HF_ENDPOINT a Hugging Face Hub?")
    if is_commit(revision) and sha != revision:
        raise HubError(f"{repo_id}: asked for commit {revision}, the hub answered {sha}")
    return sha


def hub_files(repo_id: str, commit: str, *, endpoint: str | None = None, token: str | bool | None = None,
              counter: _Counter | None = None) -> tuple[list[FileInfo], dict]:
    """Every file at `commit` (size, blob id, published LFS sha256) and the raw model info.
    Names are validated before anything else looks at them."""
    from huggingface_hub import HfApi  # noqa: F401 - the client's own parsing is used below
    from huggingface_hub.hf_api import ModelInfo  # lazy: huggingface_hub only where it runs, never at import
    from huggingface_hub.utils import (  # lazy: huggingface_hub only where it runs, never at import
        get_session,
        hf_raise_for_status,
    )

    endpoint = hub_endpoint(endpoint)
    url = f"{endpoint}/api/models/{repo_id}/revision/{quote(commit, safe='')}"
    with _hub_errors(repo_id, commit, endpoint, "listing files"):
        response = get_session().get(url, headers=_hub_headers(token), params={"blobs": True},
                                     timeout=HTTP_TIMEOUT_S)
        hf_raise_for_status(response)
        if counter is not None:
            counter.add(len(response.content))
        try:
            data = response.json()
        except ValueError:
            raise HubError(f"{repo_id}@{commit}: the model info is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("siblings"), list):
        raise HubError(f"{repo_id}@{commit}: the model info has no file list")
    if data.get("sha") != commit:
        raise HubError(f"{repo_id}: asked for commit {commit}, the model info is for {data.get('sha')!r}")
    check_repo_paths([s.get("rfilename") if isinstance(s, dict) else s for s in data["siblings"]],
                     repo_id=repo_id)
    info = ModelInfo(**data)
    files = []
    for sibling in info.siblings or []:
        lfs = sibling.lfs
        sha256 = lfs.sha256.lower() if lfs is not None and isinstance(lfs.sha256, str) else None
        if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise HubError(f"{repo_id}@{commit}: {sibling.rfilename!r} has a malformed published sha256")
        files.append(FileInfo(path=sibling.rfilename, size=sibling.size, sha256=sha256, lfs=lfs is not None,
                              blob_id=sibling.blob_id))
    return files, data


def _resolve_url(endpoint: str, repo_id: str, commit: str, path: str) -> str:
    from huggingface_hub import hf_hub_url  # lazy: huggingface_hub only where it runs, never at import

    return hf_hub_url(repo_id, path, revision=commit, endpoint=endpoint)


def _fetch_small(repo_id: str, commit: str, info: FileInfo, endpoint: str, token, counter: _Counter,
                 limit: int, *, verify: bool = True) -> bytes:
    """A small file's bytes in memory, checked against its published git blob id / sha256."""
    if info.size is not None and info.size > limit:
        raise HubError(f"{repo_id}@{commit[:12]}: {info.path} is {info.size} bytes, more than the {limit} "
                       "expected of it")
    url = _resolve_url(endpoint, repo_id, commit, info.path)
    data = _get_range(url, 0, limit, token=token, counter=counter, what=(repo_id, commit, info.path, endpoint))
    if verify:
        _check_small_file(repo_id, commit, info, data)
    return data


def _check_small_file(repo_id: str, commit: str, info: FileInfo, data: bytes) -> None:
    if info.size is not None and len(data) != info.size:
        raise HubError(f"{repo_id}@{commit[:12]}: {info.path}: got {len(data)} bytes, the hub lists {info.size}")
    if info.sha256:
        if hashlib.sha256(data).hexdigest() != info.sha256:
            raise HubError(f"{repo_id}@{commit[:12]}: {info.path} does not match its published sha256")
    elif info.blob_id:
        if git_blob_id(data) != info.blob_id:
            raise HubError(f"{repo_id}@{commit[:12]}: {info.path} does not match its published git blob id")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _get_range(url: str, start: int, length: int, *, token, counter: _Counter, what: tuple) -> bytes:
    """`length` bytes from `start` (fewer at the end of the file), over a streamed GET with a
    Range header. A server that ignores Range is read only as far as needed."""
    from huggingface_hub.utils import (  # lazy: huggingface_hub only where it runs, never at import
        get_session,
        hf_raise_for_status,
    )

    repo_id, commit, path, endpoint = what
    headers = {**_hub_headers(token), "Range": f"bytes={start}-{start + length - 1}",
               "Accept-Encoding": "identity"}
    out = bytearray()
    with _hub_errors(repo_id, commit, endpoint, path):
        with get_session().stream("GET", url, headers=headers, timeout=HTTP_TIMEOUT_S) as response:
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            skip = 0
            if response.status_code == 200:
                skip = start                      # Range ignored: the body starts at byte 0
            elif response.status_code == 206:
                content_range = response.headers.get("Content-Range", "")
                match = re.match(r"bytes (\d+)-", content_range)
                if not match or int(match.group(1)) != start:
                    raise HubError(f"{repo_id}@{commit[:12]}: {path}: the server answered range "
                                   f"{content_range!r} to a request from byte {start}")
            else:
                raise HubError(f"{repo_id}@{commit[:12]}: {path}: unexpected HTTP {response.status_code}")
            for chunk in response.iter_raw():
                counter.add(len(chunk))
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                out += chunk
                if len(out) >= length:
                    break                         # leaving the block closes the stream
    return bytes(out[:length])


def _hub_safetensors_headers(repo_id: str, commit: str, shards: list[FileInfo], endpoint: str, token,
                             counter: _Counter) -> dict[str, SafetensorsInfo]:
    """Each shard's header through range requests, checked by core.weights.safetensors_format against the
    size the hub lists: a hostile header is refused here with the same fault codes as on disk."""
    def one(info: FileInfo) -> tuple[str, SafetensorsInfo]:
        url = _resolve_url(endpoint, repo_id, commit, info.path)
        what = (repo_id, commit, info.path, endpoint)
        where = f"{repo_id}@{commit[:12]}:{info.path}"
        if info.size is None:   # the layout check needs the file's end
            raise HubError(f"{where}: the hub lists no size for this file, so its header cannot be checked")
        probe = max(8, min(HEADER_PROBE_MAX, info.size // HEADER_PROBE_SHARE))
        head = _get_range(url, 0, probe, token=token, counter=counter, what=what)
        try:
            if len(head) < min(8, info.size):
                raise HubError(f"{where}: the server sent {len(head)} bytes of a {info.size}-byte file")
            n = header_length(head, info.size, path=where)
            if len(head) < 8 + n:
                head += _get_range(url, len(head), 8 + n - len(head), token=token, counter=counter, what=what)
            if len(head) < 8 + n:
                raise HubError(f"{where}: the server sent {len(head)} bytes of an {8 + n}-byte header")
            return info.path, validate_header(head, info.size, path=where)
        except SafetensorsError as exc:
            # The stock hint says to fetch the file again; the hub would serve the same bytes.
            raise replace(exc, hint="the hub's copy of the file is malformed: do not use this model") from None

    # A few shards in parallel: each is one or two small requests, mostly latency.
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(shards)))) as pool:
        return dict(pool.map(one, shards))
