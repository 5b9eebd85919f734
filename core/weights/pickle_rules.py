"""What the pickle scanner allows and reports: the exact globals a genuine `torch.save` of a state
dict emits (ALLOWED_GLOBALS), the known code-execution gadgets ("dangerous"), the format limits,
and the findings and errors a scan returns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from weightgate.core.engine.errors import InputError

DANGEROUS = "dangerous"
UNKNOWN = "unknown"
FORMAT_ZIP = "zip"
FORMAT_PICKLE = "pickle"
FORMAT_NUMPY = "numpy"          # a .npy file (numeric: data; object dtype: the pickle it holds is scanned)
FORMAT_NPZ = "npz"              # a zip of .npy files (np.savez), each one as above
# What a genuine `torch.save` of a state dict of tensors emits (learned by scanning torch
# 2.13's output for every dtype; see tests/test_picklescan.py), restricted to the dtypes
# safetensors can hold, since converting to safetensors is the only reason to load one.
_TYPED_STORAGES = (
    "DoubleStorage", "FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
    "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage", "ComplexFloatStorage",
)
# dtypes without a legacy typed-storage class are saved as UntypedStorage + a torch.<dtype>.
_UNTYPED_DTYPES = (
    "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
    "float4_e2m1fn_x2", "uint16", "uint32", "uint64",
)
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("collections", "OrderedDict"),           # state_dict() containers (and their _metadata)
        ("torch._utils", "_rebuild_tensor_v2"),   # a tensor over a typed storage
        ("torch._utils", "_rebuild_tensor_v3"),   # a tensor over an untyped storage + dtype
        ("torch._utils", "_rebuild_parameter"),   # nn.Parameter saved as such
        ("torch.storage", "UntypedStorage"),
    }
    | {("torch", name) for name in _TYPED_STORAGES}
    | {("torch", name) for name in _UNTYPED_DTYPES}
)
# Importing or calling these runs code, touches files, processes or the network, or unpickles
# again. Prefix match on the module: "os" covers "os.path".
_DANGEROUS_MODULES = frozenset({
    "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "_posixsubprocess", "pty", "sys",
    "runpy", "importlib", "imp", "zipimport", "pkgutil", "site", "webbrowser", "socket", "_socket",
    "ssl", "http", "urllib", "ftplib", "smtplib", "telnetlib", "shutil", "tempfile", "io", "_io",
    "codecs", "fileinput", "marshal", "pickle", "_pickle", "cPickle", "dill", "cloudpickle",
    "joblib", "ctypes", "_ctypes", "cffi", "code", "codeop", "pdb", "bdb", "timeit", "trace",
    "profile", "cProfile", "doctest", "platform", "pydoc", "ensurepip", "venv", "distutils",
    "setuptools", "pip", "multiprocessing", "concurrent", "asyncio", "threading", "_thread",
    "signal", "gc", "inspect", "types", "functools", "_functools", "operator", "_operator",
    "copyreg", "copy_reg", "sqlite3", "tarfile", "zipfile",
    "numpy.f2py", "numpy.ctypeslib", "numpy.testing",
    "torch.hub", "torch.jit", "torch.serialization", "torch.package", "torch.ops", "torch.classes",
    "torch._C", "torch.utils.cpp_extension", "torch.distributed", "torch.multiprocessing",
    "torch._dynamo", "torch._inductor",
})
_BUILTINS = ("builtins", "__builtin__")
_DANGEROUS_BUILTINS = frozenset({
    "eval", "exec", "compile", "__import__", "getattr", "setattr", "delattr", "open", "input",
    "breakpoint", "globals", "locals", "vars", "help", "exit", "quit", "type", "memoryview",
    "__build_class__", "__loader__", "classmethod", "staticmethod", "property", "super",
})
_DANGEROUS_NAMES = frozenset({
    ("torch", "load"), ("torch", "save"), ("torch.storage", "_load_from_bytes"),
    ("torch", "from_file"), ("numpy", "load"), ("numpy.lib.npyio", "load"), ("numpy", "fromfile"),
})
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
TORCH_LEGACY_PICKLES = 5  # magic, protocol version, sys info, the object, storage keys
ZIP_MAGIC = b"PK\x03\x04"
MAX_PICKLE_MEMBER = 1 << 30  # a torch data.pkl is KiB-MiB; more is a zip bomb or not torch
MAX_NESTED_DEPTH = 3  # pickles inside bytes constants inside pickles ...


@dataclass(frozen=True)
class PickleFinding:
    module: str
    name: str
    opcode: str          # GLOBAL, STACK_GLOBAL, INST, REDUCE, BUILD, EXT1, ZIP ...
    offset: int          # byte offset of the opcode in its member (or the zip entry's header)
    member: str          # "pickle[0]", "archive/data.pkl", "archive/data.pkl>bytes@123" ...
    severity: str        # DANGEROUS | UNKNOWN
    reason: str = ""

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}" if self.module else self.name

    def describe(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"{self.severity} {self.qualname} ({self.opcode} at byte {self.offset} of {self.member}){why}"


@dataclass(frozen=True)
class ScanResult:
    path: str | None
    format: str                               # FORMAT_ZIP | FORMAT_PICKLE | FORMAT_NUMPY | FORMAT_NPZ
    members: tuple[str, ...]                  # the pickles scanned
    imports: tuple[tuple[str, str], ...]      # sorted (module, name) it would import
    findings: tuple[PickleFinding, ...]
    safe: bool
    notes: tuple[str, ...] = ()

    @property
    def dangerous(self) -> tuple[PickleFinding, ...]:
        return tuple(f for f in self.findings if f.severity == DANGEROUS)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["imports"] = [list(pair) for pair in self.imports]
        return data


@dataclass
class PickleScanError(InputError):
    """The bytes are not a well-formed pickle (or torch zip). Never loaded: refuse the file.

    `findings` holds what the scan had already seen before the fault: a truncated stream may
    still have imported os.system before it breaks, and the real unpickler would have run it.
    """

    offset: int | None = None
    member: str = ""
    findings: tuple[PickleFinding, ...] = ()


def why_dangerous(module: str, name: str) -> str:
    parts = module.split(".")
    for cut in range(1, len(parts) + 1):
        if ".".join(parts[:cut]) in _DANGEROUS_MODULES:
            return f"module {module} can run code or touch the system"
    if module in _BUILTINS and name in _DANGEROUS_BUILTINS:
        return f"builtins.{name} runs code or reaches arbitrary attributes"
    if (module, name) in _DANGEROUS_NAMES:
        return f"{module}.{name} loads pickles or files"
    if "." in name:
        return "dotted name: walks attributes from the imported object (protocol 4)"
    if any(part.startswith("__") for part in (*parts, name)):
        return "dunder name: reaches interpreter internals"
    return ""
