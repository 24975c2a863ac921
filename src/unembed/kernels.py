"""A fused CPU kernel for the arg-max path's reduction over the vocabulary, built on first use.

Every decoding pass turns each masked position's 30,522 logits into (arg-max token, its
probability). In torch that is three reads of the logits (``max`` with indices, then
``logsumexp``'s max and exp-sum), each a separate kernel, and torch's arg-max over a long last
dimension is not vectorised: measured on the batched int8 decode (docs/speed.md) the reduction
took about a third of the time, as much as the int8 vocabulary projection that made the logits.

``head_reduce`` does it in two passes over each row while the row is in the core's cache: a
lane-wise max / first-arg-max, then the sum of exp(logit - max) with a polynomial exp that the
compiler vectorises. The C source (``csrc/head.c``) is compiled once per machine with the system C compiler
(``cc``, or ``$CC``) into ``$UNEMBED_CACHE/kernels`` (default ``~/.cache/unembed/kernels``), keyed
by the source, the compiler and the CPU, and loaded with ctypes. Where no compiler is found or
the build fails, or with ``UNEMBED_KERNELS=0``, decoding uses the torch operations instead
(same tokens; the probabilities differ in the last bits of float32). ``status()`` says which.

Rows are split over ``torch.get_num_threads()`` threads: where torch runs on GNU OpenMP (the Linux
wheels) the library is built with ``-fopenmp`` and the parts run on the calling thread's OpenMP
team, the threads torch's own operations use; elsewhere on Python threads (ctypes releases the
GIL; ``UNEMBED_OPENMP=0`` chooses them everywhere). ``threads()`` says which.

``Int8Head`` goes one step further for int8 models: the vocabulary projection itself runs in the
same C library (int8 x int8 -> int32 with ``vpdpbusd`` on CPUs with AVX-512 VNNI, with
``vpsignb``/``vpmaddubsw``/``vpmaddwd`` on AVX2 ones; both give the same exact int32 sums), and
each tile of logits updates its rows' running max, arg-max and exp-sum while in registers, so the
[rows, 30,522] logits are never written. The same build provides it; ``int8_head_available()``
says whether this CPU got it and ``int8_head_isa()`` which instructions it uses.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from .files import cache_root
from .settings import Runtime

log = logging.getLogger(__name__)

# The C source ships as package data (csrc/head.c); read once, on first build.
C_SOURCE_FILE = Path(__file__).with_name("csrc") / "head.c"


@functools.cache
def c_source() -> str:
    return C_SOURCE_FILE.read_text(encoding="utf-8")


_FLAGS_NATIVE = ["-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno"]
_FLAGS_PLAIN = ["-O3", "-fPIC", "-shared", "-fno-math-errno"]
MIN_PARALLEL_ROWS = 16  # below this one thread does the rows (thread hand-off costs more)
HEAD_PARTS = max(1, os.cpu_count() or 1)  # Int8Head's column parts: one per core, whatever is free
ENABLED = True  # False: head_reduce declines and decoding uses torch (benchmarks compare both)
# False (or UNEMBED_OPENMP=0, settings.Runtime): the parallel parts run on Python threads, even
# where the library was built with OpenMP (benchmarks compare both)
OPENMP = Runtime.from_env().openmp
FUSED_HEAD = True  # False: Int8Head declines (int8 decoding then projects with torch and reduces with head_reduce)
HEAD_CHUNK_GROUPS = 16  # Int8Head: 64-column groups per sweep over the rows (16 x 64 x 384 bytes = 384 KiB, in L2)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_why = "not built yet"
_openmp = False  # the loaded build runs its parallel parts on OpenMP threads
_pools: dict[int, ThreadPoolExecutor] = {}  # by size; never shut down while another caller may use one


def _cache_dir() -> Path:
    return cache_root() / "kernels"


def _cpu_key() -> str:
    """What the -march=native build depends on: the CPU's model and instruction-set flags."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features"))][:3]
        return "\n".join(keep)
    except OSError:
        return platform.processor() + platform.machine()


def _compiler() -> str | None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    return cc if cc and shutil.which(cc) else None


@functools.cache  # asked by the OpenMP choice and the build key: one subprocess
def _compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _share_torchs_openmp(cc: str) -> bool:
    """Whether to build with ``-fopenmp``: torch runs on GNU OpenMP here and ``cc`` is GCC.

    Only then does the library's ``libgomp.so.1`` resolve to the copy torch loaded (a library of
    that name is already in the process), so the head's parallel parts run on the thread team
    torch's own operations use. Those threads are spinning, awake, right after a pass's last
    operation; Python threads would have to be woken and would compete with them for the cores
    (docs/speed.md: x1.4-2 on the head alone). Clang links its own libomp, and a torch on another
    runtime would get a second team: both keep Python threads. So does ``UNEMBED_OPENMP=0``.
    """
    if not Runtime.from_env().openmp or not hasattr(os, "RTLD_NOLOAD"):  # the environment, not OPENMP:
        # a benchmark that turns OPENMP off before the first load must not get a build without it
        return False
    try:
        ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD)  # raises unless already loaded (by torch)
    except OSError:
        return False
    return "Free Software Foundation" in _compiler_version(cc)  # GCC, not clang


def _build(cc: str, openmp: bool) -> Path:
    """Compile c_source() into the cache (once per source, compiler, CPU and OpenMP choice) and return the .so."""
    extra = ["-fopenmp"] if openmp else []
    parts = [c_source(), cc, _compiler_version(cc), _cpu_key(), " ".join(extra)]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]
    folder = _cache_dir()
    lib = folder / f"head_reduce-{key}.so"
    if lib.is_file() and lib.stat().st_uid == os.getuid():
        return lib
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src, out = Path(tmp) / "head_reduce.c", Path(tmp) / "head_reduce.so"
        src.write_text(c_source(), encoding="utf-8")
        errors = ""
        for flags in (_FLAGS_NATIVE, _FLAGS_PLAIN):  # -march=native is not known to every compiler
            cmd = [cc, *flags, *extra, str(src), "-o", str(out), "-lm"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                os.replace(out, lib)  # atomic: a concurrent process sees a whole file or none
                return lib
            errors = done.stderr.strip()[-500:]
        raise RuntimeError(f"{cc} failed: {errors}")


def _open(cc: str) -> ctypes.CDLL:
    """The built library, with OpenMP where it can share torch's; an OpenMP build that does not
    link (no libgomp for the compiler) or load (a libgomp symbol the loaded copy lacks) is
    replaced by one without."""
    if _share_torchs_openmp(cc):
        try:
            return ctypes.CDLL(str(_build(cc, True)))
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            log.warning("unembed: the OpenMP build of the kernels does not load (%s); using Python threads", e)
    return ctypes.CDLL(str(_build(cc, False)))


def _load() -> ctypes.CDLL | None:
    global _lib, _tried, _why, _openmp
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        try:
            if not Runtime.from_env().kernels:
                _why = "disabled by UNEMBED_KERNELS=0"
            elif (cc := _compiler()) is None:
                _why = "no C compiler found (cc, gcc, clang or $CC)"
            else:
                lib = _open(cc)
                fn = lib.head_reduce
                fn.restype = None
                p, i64 = ctypes.c_void_p, ctypes.c_int64
                fn.argtypes = [p, i64, i64, i64, p, p]
                lib.quant_rows.restype = None
                lib.quant_rows.argtypes = [p, i64, i64, i64, i64, p, p]
                lib.head_int8_part.restype = None
                lib.head_int8_part.argtypes = [p, p, i64, i64, p, p, p, p, i64, i64, i64, p, p, p]
                lib.head_int8_merge.restype = None
                lib.head_int8_merge.argtypes = [i64, i64, p, p, p, p, p]
                lib.head_reduce_par.restype = None
                lib.head_reduce_par.argtypes = [p, i64, i64, i64, p, p, i64]
                lib.head_int8.restype = None
                lib.head_int8.argtypes = [p, p, i64, i64, p, p, p, p, i64, i64, i64, i64, p, p, p, p, p]
                lib.unembed_openmp.restype = ctypes.c_int
                lib.unembed_openmp.argtypes = []
                lib.unembed_int8_head_fast.restype = ctypes.c_int
                lib.unembed_int8_head_fast.argtypes = []
                _lib, _why, _openmp = lib, "fused C kernel", bool(lib.unembed_openmp())
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            _why = f"build failed ({e}); using torch operations"
            log.warning("unembed: the fused vocabulary kernel is unavailable: %s", e)
        _tried = True
        return _lib


def status() -> str:
    """How the arg-max reduction runs here: 'fused C kernel' or why torch operations are used."""
    _load()
    return _why


def threads() -> str:
    """What runs the kernels' parallel parts: "OpenMP" (torch's thread team), "Python threads", or
    "none" (the kernels are not built)."""
    if _load() is None:
        return "none"
    return "OpenMP" if _use_openmp() else "Python threads"


def _use_openmp() -> bool:
    return OPENMP and _openmp


def int8_head_available() -> bool:
    """Whether the fused int8 projection + reduction (Int8Head) was built for this CPU (AVX-512 VNNI or AVX2)."""
    return int8_head_isa() is not None


def int8_head_isa() -> str | None:
    """Which instructions Int8Head runs on here: "AVX-512 VNNI", "AVX2", or None (not built)."""
    lib = _load()
    kind = int(lib.unembed_int8_head_fast()) if lib is not None else 0
    return {1: "AVX-512 VNNI", 2: "AVX2"}.get(kind)


def available() -> bool:
    return _load() is not None


def _on_python_threads(n: int, part) -> None:
    """part(0) .. part(n - 1) on a pool of n Python threads (where the parts do not run on OpenMP)."""
    with _lock:
        if n not in _pools:
            _pools[n] = ThreadPoolExecutor(n, thread_name_prefix=f"unembed-head{n}")
        pool = _pools[n]
    for f in [pool.submit(part, k) for k in range(n)]:
        f.result()


def head_reduce(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """[M, V] float32 CPU logits -> (first arg-max [M] long, its softmax probability [M] float32).

    None when the kernel cannot take this tensor (not built here, not CPU float32 with unit
    column stride): the caller then uses torch operations.
    """
    if not ENABLED:
        return None
    lib = _load()
    if lib is None or logits.device.type != "cpu" or logits.dtype != torch.float32 or logits.ndim != 2:
        return None
    if logits.stride(1) != 1 or logits.shape[1] == 0:
        return None
    m, v = logits.shape
    tok = torch.empty(m, dtype=torch.long)
    conf = torch.empty(m, dtype=torch.float32)
    if m == 0:
        return tok, conf
    x, ld = logits.data_ptr(), logits.stride(0)
    t_ptr, c_ptr = tok.data_ptr(), conf.data_ptr()
    n = max(1, min(torch.get_num_threads(), m // MIN_PARALLEL_ROWS))
    if n == 1:
        lib.head_reduce(x, m, v, ld, t_ptr, c_ptr)
        return tok, conf
    if _use_openmp():
        lib.head_reduce_par(x, m, v, ld, t_ptr, c_ptr, n)
        return tok, conf
    bounds = [m * k // n for k in range(n + 1)]

    def part(k: int) -> None:
        a, b = bounds[k], bounds[k + 1]
        lib.head_reduce(x + 4 * a * ld, b - a, v, ld, t_ptr + 8 * a, c_ptr + 4 * a)

    _on_python_threads(n, part)
    return tok, conf


class Int8Head:
    """The tied vocabulary projection in int8, fused with the arg-max reduction (C source above).

    ``Int8Head(weight [V, K], bias [V])(hidden [M, K])`` -> (first arg-max token [M] long, its
    softmax probability [M] float32), as ``head_reduce(hidden @ weight.T + bias)`` would give up to
    int8 rounding, without ever storing the [M, V] logits. Weights are quantised once here, one
    symmetric scale per vocabulary row (as torch's per-channel dynamic int8 does); each hidden row
    is quantised on its own (one symmetric scale per row), so a row's result does not depend on
    the other rows of its batch. Columns are split into HEAD_PARTS parts (one per core of the
    machine, whatever the thread count), shared by ``torch.get_num_threads()`` threads, and their
    partial maxima and sums merged in order, so a result does not depend on the free threads.
    Returns None where the kernel is not built here (no AVX-512 VNNI or AVX2, no compiler) or
    ``FUSED_HEAD`` is off; the caller then uses the torch projection.
    """

    GROUP = 64  # columns per weight group (4 blocks of 16 lanes)

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        w = weight.detach().to("cpu", torch.float32)
        v, k = w.shape
        self.k = k
        self.kp = (k + 3) // 4 * 4
        self.groups = (v + self.GROUP - 1) // self.GROUP
        vp = self.groups * self.GROUP
        scale = w.abs().amax(1) / 127.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        wq = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        full = torch.zeros(vp, self.kp, dtype=torch.int8)
        full[:v, :k] = wq
        # [group][K/4][4 blocks][16 columns][4 bytes]: column = group*64 + block*16 + lane (both ISAs)
        self.packed = full.view(self.groups, 4, 16, self.kp // 4, 4).permute(0, 3, 1, 2, 4).contiguous()
        self.csum = torch.zeros(vp, dtype=torch.int32)
        self.csum[:v] = 128 * wq.sum(1, dtype=torch.int32)
        self.wscale = torch.ones(vp, dtype=torch.float32)
        self.wscale[:v] = scale
        self.bias = torch.full((vp,), float("-inf"), dtype=torch.float32)
        self.bias[:v] = bias.detach().to("cpu", torch.float32)

    def __call__(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not FUSED_HEAD or not int8_head_available():
            return None
        if hidden.device.type != "cpu" or hidden.ndim != 2 or hidden.shape[1] != self.k:
            return None
        lib = _lib
        x = hidden.to(torch.float32).contiguous()
        m = x.shape[0]
        if m == 0:
            return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.float32)
        q = torch.empty(m, self.kp, dtype=torch.uint8)
        xs = torch.empty(m, dtype=torch.float32)
        lib.quant_rows(x.data_ptr(), m, self.k, x.stride(0), self.kp, q.data_ptr(), xs.data_ptr())
        # The parts are fixed per machine (not per free thread), so a result never depends on load.
        n = max(1, min(HEAD_PARTS, self.groups))
        threads = max(1, min(torch.get_num_threads(), n))
        mx = torch.empty(n, m, dtype=torch.float32)
        idx = torch.empty(n, m, dtype=torch.long)
        sm = torch.empty(n, m, dtype=torch.float32)
        ptrs = (self.packed.data_ptr(), self.csum.data_ptr(), self.wscale.data_ptr(), self.bias.data_ptr())
        tok = torch.empty(m, dtype=torch.long)
        conf = torch.empty(m, dtype=torch.float32)
        if threads == 1 or _use_openmp():  # the parts on the calling thread's OpenMP team, then the merge, in C
            parts = (mx.data_ptr(), idx.data_ptr(), sm.data_ptr(), tok.data_ptr(), conf.data_ptr())
            chunk = HEAD_CHUNK_GROUPS
            lib.head_int8(q.data_ptr(), xs.data_ptr(), m, self.kp, *ptrs, self.groups, chunk, n, threads, *parts)
            return tok, conf
        bounds = [self.groups * t // n for t in range(n + 1)]  # as head_int8 splits them

        def part(t: int) -> None:
            b = (bounds[t], bounds[t + 1], HEAD_CHUNK_GROUPS, mx[t].data_ptr(), idx[t].data_ptr(), sm[t].data_ptr())
            lib.head_int8_part(q.data_ptr(), xs.data_ptr(), m, self.kp, *ptrs, *b)

        _on_python_threads(n, part)
        lib.head_int8_merge(n, m, mx.data_ptr(), idx.data_ptr(), sm.data_ptr(), tok.data_ptr(), conf.data_ptr())
        return tok, conf
