"""A loopback Hugging Face Hub that the real `huggingface_hub` client talks to, and that plays
the hub's failures on demand.

Why an emulator and not mocks: the point of the tests is that *our* code, through the *real*
client (its URL building, headers, error mapping, range handling), does the right thing
against the HTTP the hub actually sends. So this speaks HTTP/1.1 on 127.0.0.1 (port 0), and
implements exactly the endpoints the client uses (learned from huggingface_hub 2.x's source):

    GET  /api/models/{repo}[/revision/{rev}]      model_info / repo_info (?blobs=True: sizes + LFS)
    GET  /api/models/{repo}/tree/{rev}[/{path}]   list_repo_tree / list_repo_files (?recursive=)
    GET  /api/models/{repo}/refs                  list_repo_refs
    HEAD /{repo}/resolve/{rev}/{path}             get_hf_file_metadata: X-Repo-Commit, ETag,
                                                  X-Linked-Etag / X-Linked-Size (LFS), Content-Length
    GET  /{repo}/resolve/{rev}/{path}             the bytes; `Range: bytes=a-b` -> 206 + Content-Range

Xet is never advertised (no X-Xet-Hash), so the client always uses plain HTTP downloads.
With `HubEmulator(cdn=True)` LFS files take the real hub's route: a 302 from /resolve (with the
hub headers) to a CDN on another origin (`localhost`, same socket) that serves the bytes.

Repos are built by the tests: `hub.commit(repo, {path: bytes})` makes a new commit on a branch;
branches and tags map to commit shas and can be moved (`hub.set_ref`). LFS files (weights,
anything big) get their sha256 as ETag, like the real hub; git files a git-blob sha1.

Faults (`hub.fault(kind, path=..., times=...)`), each consumed per matching request:
    wrong_bytes    right length, one byte flipped
    short_body     Content-Length says the full size, the body stops at byte `at` of the file, then a
                   clean close. Persistent by default: a resume from `at` gets nothing new.
    drop           like short_body but a TCP reset; meant for times=1 (then the resume succeeds)
    ignore_range   always 200 + the full body, whatever Range says
    no_commit      no X-Repo-Commit header
    no_etag        no ETag / X-Linked-Etag
    no_size        no Content-Length / X-Linked-Size (the body is then delimited by close)
    status         answer with `status` (e.g. 500, 404)
    slow           sleep `delay` seconds per 64 KiB chunk (progress and cancel tests)

Every request is logged (`hub.requests`) with its range, status and body bytes sent, so tests
can measure what a metadata fetch cost.

`serve()` / the `hub` fixture also point the environment at the emulator (HF_ENDPOINT, HF_HOME,
HF_HUB_CACHE, HF_HUB_DISABLE_XET) for job subprocesses. huggingface_hub reads HF_ENDPOINT once,
at import (`constants.ENDPOINT`), so in-process code passes `endpoint=hub.url` explicitly.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import socket
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

# Suffixes the hub stores in LFS (its default .gitattributes), plus anything big.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx",
                ".model", ".pkl", ".zip", ".tar", ".gz")
LFS_MIN_SIZE = 10 * 1024 * 1024
CHUNK = 64 * 1024
MAX_REQUESTS_PER_CONNECTION = 1000  # keep-alive loops are bounded

FAULT_KINDS = ("wrong_bytes", "short_body", "drop", "ignore_range", "no_commit", "no_etag", "no_size",
               "status", "slow")
HEADER_FAULTS = frozenset({"no_commit", "no_etag", "no_size", "status"})   # played by the hub itself
BODY_FAULTS = frozenset(FAULT_KINDS) - HEADER_FAULTS                         # played where the bytes come from


# --- blobs and repos ------------------------------------------------------------------------


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Blob:
    """A file's content. `virtual` blobs generate their bytes (header + zeros) on demand, so a
    test can serve a "multi-GB" model without holding it; their sha256 is a stand-in."""

    size: int
    sha256: str
    lfs: bool
    git_oid: str            # the sibling's blobId: sha1 of the content, or of the LFS pointer
    data: bytes | None = None
    head: bytes = b""       # virtual: the real leading bytes; the rest reads as zeros

    @property
    def pointer(self) -> bytes:
        return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
                f"size {self.size}\n").encode()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end)."""
        if self.data is not None:
            return self.data[start:end]
        out = self.head[start:end]
        return out + bytes(max(0, end - max(start, len(self.head))))


def make_blob(data: bytes, *, lfs: bool | None = None, path: str = "") -> Blob:
    if lfs is None:
        lfs = path.endswith(LFS_SUFFIXES) or len(data) >= LFS_MIN_SIZE
    return _make_blob(data, lfs)


@functools.lru_cache(maxsize=512)
def _make_blob(data: bytes, lfs: bool) -> Blob:
    # Cached: tests rebuild the same repos, and hashing MBs per test adds up. Blobs are
    # never mutated.
    sha = hashlib.sha256(data).hexdigest()
    blob = Blob(size=len(data), sha256=sha, lfs=lfs, git_oid="", data=data)
    blob.git_oid = git_blob_oid(blob.pointer) if lfs else git_blob_oid(data)
    return blob


def virtual_blob(head: bytes, size: int) -> Blob:
    sha = hashlib.sha256(b"virtual:" + head + str(size).encode()).hexdigest()  # stand-in, never downloaded
    blob = Blob(size=size, sha256=sha, lfs=True, git_oid="", head=head)
    blob.git_oid = git_blob_oid(blob.pointer)
    return blob


@dataclass
class Repo:
    repo_id: str
    commits: dict[str, dict[str, Blob]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # Extra top-level model_info fields (e.g. {"cardData": None} to hide the card data).
    info_overrides: dict = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        if revision in self.commits:
            return revision
        if re.fullmatch(r"[0-9a-f]{7,39}", revision):
            found = [sha for sha in self.commits if sha.startswith(revision)]
            if len(found) == 1:
                return found[0]
        return None


@dataclass
class Fault:
    kind: str
    path: str | None = None          # file in the repo (None: every file)
    repo_id: str | None = None
    method: str | None = "GET"       # "GET", "HEAD" or None for both
    times: int | None = None         # None: every matching request
    at: int | None = None            # short_body / drop: absolute byte offset where the body stops
    status: int = 500
    delay: float = 0.0
    hits: int = 0

    def matches(self, method: str, repo_id: str, path: str) -> bool:
        return ((self.times is None or self.hits < self.times)
                and (self.method is None or self.method == method)
                and (self.repo_id is None or self.repo_id == repo_id)
                and (self.path is None or self.path == path))


@dataclass
class RequestRecord:
    method: str
    path: str                        # the raw request path
    repo_id: str | None = None
    filename: str | None = None
    range: str | None = None
    status: int = 0
    body_bytes: int = 0              # bytes of body actually written
    faults: tuple[str, ...] = ()


class _Abort(Exception):
    """Raised after a deliberately broken response; the server swallows it quietly."""


# --- the server -----------------------------------------------------------------------------


class HubEmulator:
    def __init__(self, *, cdn: bool = False) -> None:
        # cdn=True: like the real hub, /resolve answers LFS files with a 302 (X-Repo-Commit,
        # X-Linked-Etag, X-Linked-Size) to a "CDN" on another origin (localhost instead of
        # 127.0.0.1, same socket), which serves the bytes with Range but no hub headers.
        self.cdn = cdn
        self.repos: dict[str, Repo] = {}
        self.faults: list[Fault] = []
        self.requests: list[RequestRecord] = []
        self.hooks: list[Callable[[RequestRecord], None]] = []  # run before each request is answered
        self._lock = threading.RLock()
        self._counter = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # repo building ---------------------------------------------------------------------------

    def create_repo(self, repo_id: str) -> Repo:
        with self._lock:
            return self.repos.setdefault(repo_id, Repo(repo_id))

    def commit(self, repo_id: str, files: Mapping[str, bytes | Blob | None], *, branch: str = "main",
               replace: bool = False) -> str:
        """A new commit on `branch` (created if needed): the branch's files updated by `files`
        (None deletes a path; replace=True starts from an empty tree). Returns the commit sha."""
        with self._lock:
            repo = self.create_repo(repo_id)
            parent = repo.branches.get(branch)
            tree = {} if replace or parent is None else dict(repo.commits[parent])
            for path, content in files.items():
                if content is None:
                    tree.pop(path, None)
                else:
                    tree[path] = content if isinstance(content, Blob) else make_blob(content, path=path)
            self._counter += 1
            digest = hashlib.sha1(f"{repo_id}|{parent}|{self._counter}".encode())
            for path in sorted(tree):
                digest.update(f"{path}\0{tree[path].git_oid}\n".encode("utf-8", "surrogateescape"))
            sha = digest.hexdigest()
            repo.commits[sha] = tree
            repo.branches[branch] = sha
            return sha

    def tag(self, repo_id: str, name: str, revision: str = "main") -> str:
        with self._lock:
            repo = self.repos[repo_id]
            sha = repo.resolve(revision)
            assert sha, f"no revision {revision}"
            repo.tags[name] = sha
            return sha

    def set_ref(self, repo_id: str, branch: str, sha: str) -> None:
        """Move a branch (e.g. after a client pinned it)."""
        with self._lock:
            assert sha in self.repos[repo_id].commits
            self.repos[repo_id].branches[branch] = sha

    def fault(self, kind: str, path: str | None = None, **kwargs) -> Fault:
        assert kind in FAULT_KINDS, kind
        item = Fault(kind=kind, path=path, **kwargs)
        with self._lock:
            self.faults.append(item)
        return item

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def log_for(self, filename: str | None = None, method: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.requests
                    if (filename is None or r.filename == filename) and (method is None or r.method == method)]

    # lifecycle ---------------------------------------------------------------------------------

    def start(self) -> "HubEmulator":
        handler = type("Handler", (_Handler,), {"hub": self})
        server = _Server(("127.0.0.1", 0), handler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="hub-emulator", daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "HubEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # request handling helpers -----------------------------------------------------------------

    def _take_faults(self, method: str, repo_id: str, path: str,
                     kinds: frozenset[str] = frozenset(FAULT_KINDS)) -> list[Fault]:
        with self._lock:
            taken = [f for f in self.faults if f.kind in kinds and f.matches(method, repo_id, path)]
            for item in taken:
                item.hits += 1
            return taken


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True           # idle keep-alive connections never block shutdown
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (_Abort, ConnectionError, TimeoutError, OSError)):
            return  # deliberate faults and clients hanging up are normal here
        super().handle_error(request, client_address)


_API_RE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$")
_RESOLVE_RE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN_RE = re.compile(r"^/cdn/(?P<repo>[^/]+/[^/]+)/(?P<sha>[0-9a-f]{64})/(?P<path>.+)$")
_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


class _Handler(http.server.BaseHTTPRequestHandler):
    hub: HubEmulator
    protocol_version = "HTTP/1.1"   # keep-alive, Content-Length framing, like the hub
    timeout = 10                     # an idle keep-alive connection is closed after this

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass

    def handle(self) -> None:
        # The stdlib loops while the client keeps the connection alive; bound it.
        self.close_connection = True
        self.handle_one_request()
        served = 1
        while not self.close_connection and served < MAX_REQUESTS_PER_CONNECTION:
            self.handle_one_request()
            served += 1

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    # routing -----------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        raw_path = split.path
        record = RequestRecord(method=method, path=self.path, range=self.headers.get("Range"))
        with self.hub._lock:
            self.hub.requests.append(record)
        self._record = record
        for hook in list(self.hub.hooks):
            hook(record)
        if match := _API_RE.match(raw_path):
            record.repo_id = unquote(match["repo"])
            self._api(method, record.repo_id, match["rest"] or "", parse_qs(split.query))
        elif match := _RESOLVE_RE.match(raw_path):
            record.repo_id = unquote(match["repo"])
            record.filename = unquote(match["path"])
            self._resolve(method, record.repo_id, unquote(match["rev"]), record.filename)
        elif match := _CDN_RE.match(raw_path):
            record.repo_id = unquote(match["repo"])
            record.filename = unquote(match["path"])
            self._cdn(method, record.repo_id, match["sha"], record.filename)
        else:
            self._error(404, "RepoNotFound", "not found", method)

    def _repo(self, repo_id: str, method: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            # The hub answers 401 for missing (or private) repos; the client maps it to RepositoryNotFoundError.
            self._error(401, "RepoNotFound", "Repository not found", method)
        return repo

    # /api/models/... -------------------------------------------------------------------------

    def _api(self, method: str, repo_id: str, rest: str, query: dict) -> None:
        repo = self._repo(repo_id, method)
        if repo is None:
            return
        with self.hub._lock:
            if rest in ("", "/"):
                self._model_info(method, repo, "main", query)
            elif rest.startswith("/revision/"):
                self._model_info(method, repo, unquote(rest[len("/revision/"):]), query)
            elif rest.startswith("/tree/"):
                revision, _, sub = rest[len("/tree/"):].partition("/")
                self._tree(method, repo, unquote(revision), unquote(sub), query)
            elif rest == "/refs":
                self._json(method, {
                    "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s}
                                 for n, s in sorted(repo.branches.items())],
                    "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": s}
                             for n, s in sorted(repo.tags.items())],
                    "converts": [],
                })
            else:
                self._error(404, None, f"unknown endpoint {rest}", method)

    def _model_info(self, method: str, repo: Repo, revision: str, query: dict) -> None:
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", method)
            return
        tree = repo.commits[sha]
        blobs = _truthy(query.get("blobs"))
        siblings = []
        for path in sorted(tree):
            blob = tree[path]
            entry: dict = {"rfilename": path}
            if blobs:
                entry.update(blobId=blob.git_oid, size=blob.size)
                if blob.lfs:
                    entry["lfs"] = {"sha256": blob.sha256, "size": blob.size, "pointerSize": len(blob.pointer)}
            siblings.append(entry)
        config = _json_or_none(tree.get("config.json"))
        info = {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": sha,
            "lastModified": "2025-01-01T00:00:00.000Z",
            "createdAt": "2025-01-01T00:00:00.000Z",
            "private": False,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "library_name": "transformers",
            "tags": ["transformers", "safetensors"],
            "pipeline_tag": "text-generation",
            "siblings": siblings,
        }
        card = _card_data(tree.get("README.md"))
        if card is not None:
            info["cardData"] = card
        if isinstance(config, dict):
            info["config"] = {k: config[k] for k in ("architectures", "model_type", "auto_map") if k in config}
        params = _safetensors_params(tree)
        if params:
            info["safetensors"] = {"parameters": params, "total": sum(params.values())}
        info["usedStorage"] = sum(b.size for b in tree.values())
        info.update(repo.info_overrides)
        expand = query.get("expand") or query.get("expand[]")
        if expand:  # like the hub: only the asked properties (plus the ids)
            info = {k: v for k, v in info.items() if k in ("_id", "id") or k in expand}
        self._json(method, info)

    def _tree(self, method: str, repo: Repo, revision: str, sub: str, query: dict) -> None:
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", method)
            return
        recursive = _truthy(query.get("recursive"))
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        entries, dirs = [], set()
        for path, blob in sorted(repo.commits[sha].items()):
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix):]
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                if recursive or depth == 1:
                    dirs.add(prefix + "/".join(parts[:depth]))
            if not recursive and len(parts) > 1:
                continue
            entry = {"type": "file", "oid": blob.git_oid, "size": blob.size, "path": path}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": len(blob.pointer)}
            entries.append(entry)
        folders = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "path": d}
                   for d in sorted(dirs)]
        self._json(method, folders + entries)

    # /{repo}/resolve/{rev}/{path} ------------------------------------------------------------

    def _resolve(self, method: str, repo_id: str, revision: str, filename: str) -> None:
        repo = self._repo(repo_id, method)
        if repo is None:
            return
        with self.hub._lock:
            sha = repo.resolve(revision)
            blob = repo.commits[sha].get(filename) if sha else None
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", method)
            return
        if blob is None:
            self._error(404, "EntryNotFound", f"{filename} does not exist on {revision}", method,
                        extra={"X-Repo-Commit": sha})
            return
        redirect = self.hub.cdn and blob.lfs
        faults = self.hub._take_faults(method, repo_id, filename, HEADER_FAULTS if redirect else FAULT_KINDS)
        kinds = {f.kind: f for f in faults}
        self._record.faults = tuple(kinds)
        if "status" in kinds:
            self._error(kinds["status"].status, None, "injected failure", method, extra={"X-Repo-Commit": sha})
            return
        if redirect:
            self._redirect_to_cdn(method, repo_id, sha, filename, blob, kinds)
            return
        self._serve_blob(method, blob, kinds, sha)

    def _redirect_to_cdn(self, method: str, repo_id: str, sha: str, filename: str, blob: Blob,
                         kinds: dict[str, Fault]) -> None:
        port = self.server.server_address[1]
        self.send_response(302)
        self.send_header("Location", f"http://localhost:{port}/cdn/{quote(repo_id)}/{blob.sha256}/{quote(filename)}")
        if "no_commit" not in kinds:
            self.send_header("X-Repo-Commit", sha)
        if "no_etag" not in kinds:
            self.send_header("X-Linked-Etag", f'"{blob.sha256}"')
            self.send_header("ETag", f'"{blob.git_oid}"')   # the pointer's; the client prefers X-Linked-Etag
        if "no_size" not in kinds:
            self.send_header("X-Linked-Size", str(blob.size))
        self.send_header("Content-Length", "0")
        self.end_headers()
        self._record.status = 302

    def _cdn(self, method: str, repo_id: str, sha256: str, filename: str) -> None:
        with self.hub._lock:
            repo = self.hub.repos.get(repo_id)
            blob = next((b for tree in (repo.commits.values() if repo else ()) for b in tree.values()
                         if b.lfs and b.sha256 == sha256), None)
        if blob is None:
            self._error(404, None, "no such object", method)
            return
        faults = self.hub._take_faults(method, repo_id, filename, BODY_FAULTS)
        kinds = {f.kind: f for f in faults}
        self._record.faults = tuple(kinds)
        self._serve_blob(method, blob, kinds, None)

    def _serve_blob(self, method: str, blob: Blob, kinds: dict[str, Fault], sha: str | None) -> None:
        """The bytes, with Range; hub headers when `sha` is given (None: a CDN answering)."""
        start, end, partial = 0, blob.size, False
        wanted = self.headers.get("Range")
        if wanted and "ignore_range" not in kinds and method == "GET":
            parsed = _parse_range(wanted, blob.size)
            if parsed is None:
                self._error(416, None, "Range Not Satisfiable", method,
                            extra={"Content-Range": f"bytes */{blob.size}"})
                return
            start, end = parsed
            partial = True

        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if "no_commit" not in kinds and sha is not None:
            headers["X-Repo-Commit"] = sha
        if "no_etag" not in kinds:
            headers["ETag"] = f'"{blob.etag}"'
            if blob.lfs and sha is not None:
                headers["X-Linked-Etag"] = f'"{blob.sha256}"'
        send_size = "no_size" not in kinds
        if send_size:
            headers["Content-Length"] = str(end - start)
            if blob.lfs and sha is not None:
                headers["X-Linked-Size"] = str(blob.size)
        if partial:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"
        self.send_response(206 if partial else 200)
        for name, value in headers.items():
            self.send_header(name, value)
        if not send_size or {"short_body", "drop"} & kinds.keys():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self._record.status = 206 if partial else 200
        if method == "HEAD":
            return
        self._send_body(blob, start, end, kinds)

    def _send_body(self, blob: Blob, start: int, end: int, kinds: dict[str, Fault]) -> None:
        stop_at = end
        cut = kinds.get("short_body") or kinds.get("drop")
        if cut is not None:
            at = cut.at if cut.at is not None else blob.size // 2
            stop_at = max(start, min(end, at))
        flip = kinds.get("wrong_bytes")
        flip_at = blob.size // 2
        delay = kinds["slow"].delay if "slow" in kinds else 0.0
        position = start
        while position < stop_at:
            chunk = blob.read(position, min(stop_at, position + CHUNK))
            if flip is not None and position <= flip_at < position + len(chunk):
                index = flip_at - position
                chunk = chunk[:index] + bytes([chunk[index] ^ 0xFF]) + chunk[index + 1:]
            # Counted before the write: the client may have the bytes before write() returns.
            self._record.body_bytes += len(chunk)
            try:
                self.wfile.write(chunk)
            except OSError:
                self._record.body_bytes -= len(chunk)
                self.close_connection = True
                return
            position += len(chunk)
            if delay:
                time.sleep(delay)
        if cut is not None:
            self.wfile.flush()
            if cut.kind == "drop":
                # Let the client take in what was sent (a RST discards data it has not read),
                # then SO_LINGER 0: close sends a RST, as a broken network path would.
                _wait_until_sent(self.connection)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif cut.kind == "short_body":
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)  # a clean FIN: the body just ends
                except OSError:
                    pass
            self.close_connection = True
            self.connection.close()
            raise _Abort(cut.kind)

    # responses ---------------------------------------------------------------------------------

    def _json(self, method: str, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._record.status = 200
        if method != "HEAD":
            self._record.body_bytes += len(body)
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str, method: str, extra: dict | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._record.status = status
        if method != "HEAD":
            self._record.body_bytes += len(body)
            self.wfile.write(body)


def _wait_until_sent(sock: socket.socket, limit_s: float = 3.0) -> None:
    """Until the peer has acknowledged every byte we sent (Linux SIOCOUTQ), plus a moment for
    it to read them; a plain pause where the ioctl is not available. Bounded."""
    deadline = time.monotonic() + limit_s
    try:
        import fcntl
        import termios

        while time.monotonic() < deadline:
            unsent = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
            if unsent == 0:
                break
            time.sleep(0.01)
    except (ImportError, OSError):
        pass
    time.sleep(0.1)


def _truthy(values: list[str] | None) -> bool:
    return bool(values) and values[-1].lower() in ("1", "true", "yes")


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """[start, end) for a single `bytes=` range, clamped like the hub; None if unsatisfiable."""
    match = _RANGE_RE.match(header)
    if not match:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        start, end = max(0, size - int(last)), size
    else:
        start = int(first)
        end = size if last == "" else min(size, int(last) + 1)
    if start >= size or start >= end:
        return None
    return start, end


def _json_or_none(blob: Blob | None):
    if blob is None or blob.data is None:
        return None
    try:
        return json.loads(blob.data)
    except ValueError:
        return None


def _card_data(blob: Blob | None) -> dict | None:
    """The README's YAML front matter, as the hub returns it in `cardData`."""
    if blob is None or blob.data is None:
        return None
    text = blob.data.decode("utf-8", errors="replace")
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not match:
        return None
    import yaml

    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _safetensors_params(tree: dict[str, Blob]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path, blob in tree.items():
        if not path.endswith(".safetensors") or blob.size < 8:
            continue
        (length,) = struct.unpack("<Q", blob.read(0, 8))
        try:
            header = json.loads(blob.read(8, 8 + length))
        except ValueError:
            continue
        for name, info in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in info["shape"]:
                count *= dim
            counts[info["dtype"]] = counts.get(info["dtype"], 0) + count
    return counts


# --- building test repos --------------------------------------------------------------------

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def safetensors_bytes(tensors: Mapping[str, tuple[str, tuple[int, ...]]], *, seed: int = 0,
                      metadata: dict | None = None, virtual: bool = False) -> bytes | tuple[bytes, int]:
    """A valid safetensors file of random data: {name: (dtype, shape)}. With virtual=True,
    returns (header bytes, total size) for a `virtual_blob` instead of building the data."""
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        count = 1
        for dim in shape:
            count *= dim
        nbytes = count * DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the reference writer pads the header to 8 bytes
    head = struct.pack("<Q", len(raw)) + raw
    if virtual:
        return head, len(head) + offset
    import numpy as np  # its generator makes random bytes ~50x faster than random.randbytes

    return head + np.random.default_rng(seed).bytes(offset)


@dataclass(frozen=True)
class LlamaShape:
    hidden_size: int = 256
    intermediate_size: int = 1024
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    head_dim: int = 32
    vocab_size: int = 4096
    max_position_embeddings: int = 4096


def llama_tensors(shape: LlamaShape) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Llama's parameter names and shapes: BF16 matrices, F32 norms."""
    h, i, v = shape.hidden_size, shape.intermediate_size, shape.vocab_size
    q = shape.num_attention_heads * shape.head_dim
    kv = shape.num_key_value_heads * shape.head_dim
    tensors = {"model.embed_tokens.weight": ("BF16", (v, h))}
    for layer in range(shape.num_hidden_layers):
        p = f"model.layers.{layer}."
        tensors.update({
            p + "self_attn.q_proj.weight": ("BF16", (q, h)),
            p + "self_attn.k_proj.weight": ("BF16", (kv, h)),
            p + "self_attn.v_proj.weight": ("BF16", (kv, h)),
            p + "self_attn.o_proj.weight": ("BF16", (h, q)),
            p + "mlp.gate_proj.weight": ("BF16", (i, h)),
            p + "mlp.up_proj.weight": ("BF16", (i, h)),
            p + "mlp.down_proj.weight": ("BF16", (h, i)),
            p + "input_layernorm.weight": ("F32", (h,)),
            p + "post_attention_layernorm.weight": ("F32", (h,)),
        })
    tensors["model.norm.weight"] = ("F32", (h,))
    tensors["lm_head.weight"] = ("BF16", (v, h))
    return tensors


def llama_config(shape: LlamaShape, **extra) -> dict:
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.num_hidden_layers,
        "num_attention_heads": shape.num_attention_heads,
        "num_key_value_heads": shape.num_key_value_heads,
        "head_dim": shape.head_dim,
        "vocab_size": shape.vocab_size,
        "max_position_embeddings": shape.max_position_embeddings,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "torch_dtype": "bfloat16",
        "tie_word_embeddings": False,
    }
    config.update(extra)
    return config


def split_shards(tensors: dict, n_shards: int) -> list[dict]:
    """Split tensors (in order) into n_shards groups of about equal bytes."""
    sizes = {name: DTYPE_BYTES[d] * _prod(s) for name, (d, s) in tensors.items()}
    target = sum(sizes.values()) / n_shards
    shards: list[dict] = [{}]
    filled = 0.0
    for name, spec in tensors.items():
        if filled >= target and len(shards) < n_shards:
            shards.append({})
            filled = 0.0
        shards[-1][name] = spec
        filled += sizes[name]
    return shards


def _prod(shape) -> int:
    out = 1
    for dim in shape:
        out *= dim
    return out


README = """---
license: apache-2.0
language:
- en
library_name: transformers
pipeline_tag: text-generation
---

# {name}

A tiny random-weight Llama for weightgate's tests.
"""


def llama_repo_files(shape: LlamaShape | None = None, *, n_shards: int = 3, seed: int = 0,
                     config_extra: dict | None = None, with_pickle: bool = True,
                     name: str = "tiny-llama") -> dict[str, bytes]:
    """The files of a sharded Llama repo: shards + index, config, tokenizer files, README with
    `license: apache-2.0`, and (to prove it is skipped) a pytorch_model.bin pickle."""
    shape = shape or LlamaShape()
    tensors = llama_tensors(shape)
    files: dict[str, bytes] = {}
    weight_map = {}
    groups = split_shards(tensors, n_shards) if n_shards > 1 else [tensors]
    total = 0
    for index, group in enumerate(groups):
        fname = (f"model-{index + 1:05d}-of-{len(groups):05d}.safetensors" if n_shards > 1
                 else "model.safetensors")
        files[fname] = _shard_bytes(tuple(group.items()), seed + index)
        weight_map.update({tensor: fname for tensor in group})
        total += sum(DTYPE_BYTES[d] * _prod(s) for d, s in group.values())
    if n_shards > 1:
        files["model.safetensors.index.json"] = json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2).encode()
    files["config.json"] = json.dumps(llama_config(shape, **(config_extra or {})), indent=2).encode()
    files["generation_config.json"] = json.dumps({"bos_token_id": 1, "eos_token_id": 2}).encode()
    files["tokenizer.json"] = json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}}}).encode()
    files["tokenizer_config.json"] = json.dumps({"bos_token": "<s>", "eos_token": "</s>"}).encode()
    files["special_tokens_map.json"] = json.dumps({"bos_token": "<s>"}).encode()
    files["README.md"] = README.format(name=name).encode()
    files[".gitattributes"] = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
    if with_pickle:
        import pickle

        files["pytorch_model.bin"] = pickle.dumps({"note": "a pickle that must never be fetched"}, protocol=4)
        files["training_args.bin"] = pickle.dumps({"lr": 1e-4}, protocol=4)
    return files


@functools.lru_cache(maxsize=32)
def _shard_bytes(items: tuple, seed: int) -> bytes:
    return safetensors_bytes(dict(items), seed=seed)


def big_virtual_repo_files(shape: LlamaShape, n_shards: int) -> dict[str, bytes | Blob]:
    """A realistically sized sharded repo whose shards are virtual (header + zeros): for
    measuring what a metadata fetch costs against GBs of weights without building them."""
    tensors = llama_tensors(shape)
    files: dict[str, bytes | Blob] = {}
    weight_map = {}
    total = 0
    for index, group in enumerate(split_shards(tensors, n_shards)):
        fname = f"model-{index + 1:05d}-of-{n_shards:05d}.safetensors"
        head, size = safetensors_bytes(group, virtual=True)
        files[fname] = virtual_blob(head, size)
        weight_map.update({tensor: fname for tensor in group})
        total += size - len(head)
    files["model.safetensors.index.json"] = json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2).encode()
    files["config.json"] = json.dumps(llama_config(shape), indent=2).encode()
    files["README.md"] = README.format(name="big-llama").encode()
    return files


# --- wiring it to the client ----------------------------------------------------------------


def client_env(hub_url: str, home: str) -> dict[str, str]:
    """Environment that points a (fresh) huggingface_hub process at the emulator."""
    return {
        "HF_ENDPOINT": hub_url,
        "HF_HOME": home,
        "HF_HUB_CACHE": os.path.join(home, "hub"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_ETAG_TIMEOUT": "10",
        "HF_HUB_DOWNLOAD_TIMEOUT": "10",
    }


@contextmanager
def serve(*, cdn: bool = False) -> Iterator[HubEmulator]:
    hub = HubEmulator(cdn=cdn).start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def hub(request, tmp_path, monkeypatch) -> Iterator[HubEmulator]:
    """A running emulator; the environment (for job subprocesses) points at it, with a fresh
    HF_HOME, no token and no offline mode. `@pytest.mark.parametrize("hub", ["cdn"],
    indirect=True)` serves LFS files through the CDN redirect."""
    home = tmp_path / "hf-home"
    home.mkdir()
    with serve(cdn=getattr(request, "param", None) == "cdn") as emulator:
        for key, value in client_env(emulator.url, str(home)).items():
            monkeypatch.setenv(key, value)
        for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(key, raising=False)
        emulator.home = home  # type: ignore[attr-defined]
        emulator.cache_dir = home / "hub"  # type: ignore[attr-defined]
        yield emulator


# --- a standalone loopback hub (benchmarks, manual runs) ------------------------------------


def bench_repo_files(shards: int, size: int, seed: int = 7) -> dict[str, bytes]:
    """A sharded repo of `shards` safetensors files of about `size` random bytes each, plus
    config and index: real bytes (the download verifies them), one U8 tensor per shard."""
    files: dict[str, bytes] = {}
    weight_map = {}
    for index in range(shards):
        name = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        tensor = f"model.layers.{index}.weight"
        files[name] = safetensors_bytes({tensor: ("U8", (size,))}, seed=seed + index)
        weight_map[tensor] = name
    files["model.safetensors.index.json"] = json.dumps(
        {"metadata": {"total_size": shards * size}, "weight_map": weight_map}).encode()
    files["config.json"] = json.dumps(llama_config(LlamaShape())).encode()
    files["README.md"] = README.format(name="bench").encode()
    return files


def main(argv: list[str] | None = None) -> int:
    """`python tests/hub_emulator.py --shards 4 --size-mib 256`: serve a bench repo on
    127.0.0.1, print {"url", "repo", "commit"} as one JSON line, stop when stdin closes."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="a loopback Hugging Face Hub with one sharded repo")
    parser.add_argument("--repo", default="bench/model")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--size-mib", type=int, default=64)
    args = parser.parse_args(argv)
    emulator = HubEmulator()
    commit = emulator.commit(args.repo, bench_repo_files(args.shards, args.size_mib << 20))
    emulator.start()
    try:
        print(json.dumps({"url": emulator.url, "repo": args.repo, "commit": commit}), flush=True)
        sys.stdin.read()   # until the parent closes our stdin (or exits)
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
