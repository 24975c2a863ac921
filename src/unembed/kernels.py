"""A fused CPU kernel for the arg-max path's reduction over the vocabulary, built on first use.

Every decoding pass turns each masked position's 30,522 logits into (arg-max token, its
probability). In torch that is three reads of the logits (``max`` with indices, then
``logsumexp``'s max and exp-sum), each a separate kernel, and torch's arg-max over a long last
dimension is not vectorised: measured on the batched int8 decode (docs/speed.md) the reduction
took about a third of the time, as much as the int8 vocabulary projection that made the logits.

``head_reduce`` does it in two passes over each row while the row is in the core's cache: a
lane-wise max / first-arg-max, then the sum of exp(logit - max) with a polynomial exp that the
compiler vectorises. The C source below is compiled once per machine with the system C compiler
(``cc``, or ``$CC``) into ``$UNEMBED_CACHE/kernels`` (default ``~/.cache/unembed/kernels``), keyed
by the source, the compiler and the CPU, and loaded with ctypes. Where no compiler is found or
the build fails, or with ``UNEMBED_KERNELS=0``, decoding uses the torch operations instead
(same tokens; the probabilities differ in the last bits of float32). ``status()`` says which.

Rows are split over ``torch.get_num_threads()`` Python threads (ctypes releases the GIL).
"""

from __future__ import annotations

import ctypes
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

log = logging.getLogger(__name__)

C_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#include <math.h>

/* 16 float lanes as a GCC/Clang vector type: one AVX-512 register, two AVX2 ones, four SSE ones
   (the compiler splits it for the CPU it builds for). */
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
#define LANES 16

static inline vf load(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline vf pick(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }

/* exp(x) for x <= 0, lane-wise (Cephes expf polynomial, relative error about 2e-7). */
static inline vf exp_nonpos(vf x) {
    const vf lo = (vf){0} - 87.0f;
    x = pick(x < lo, lo, x);
    vf n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
    vf p = (vf){0} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)e;
}

static inline float exp_nonpos1(float x) {
    vf v = (vf){0} + x;
    return exp_nonpos(v)[0];
}

/* rows x v logits (row stride ld floats) -> tok[i] = first arg-max of row i,
   conf[i] = 1 / sum_j exp(x_ij - max_i) = the arg-max token's softmax probability. */
void head_reduce(const float *x, int64_t rows, int64_t v, int64_t ld, int64_t *tok, float *conf) {
    int64_t blocks = v / LANES;
    for (int64_t i = 0; i < rows; i++) {
        const float *row = x + i * ld;
        vf best = (vf){0} - INFINITY;
        vi at = (vi){0};
        for (int64_t b = 0; b < blocks; b++) {
            vf p = load(row + b * LANES);
            vi gt = p > best;
            best = pick(gt, p, best);
            at = (at & ~gt) | (((vi){0} + (int32_t)b) & gt);
        }
        float m = -INFINITY;
        int64_t arg = 0;
        for (int l = 0; l < LANES; l++) {
            int64_t idx = (int64_t)at[l] * LANES + l;
            if (best[l] > m || (best[l] == m && idx < arg)) { m = best[l]; arg = idx; }
        }
        for (int64_t j = blocks * LANES; j < v; j++) {
            if (row[j] > m) { m = row[j]; arg = j; }
        }
        vf acc = (vf){0};
        for (int64_t b = 0; b < blocks; b++) acc += exp_nonpos(load(row + b * LANES) - m);
        float s = 0.0f;
        for (int l = 0; l < LANES; l++) s += acc[l];
        for (int64_t j = blocks * LANES; j < v; j++) s += exp_nonpos1(row[j] - m);
        tok[i] = arg;
        conf[i] = 1.0f / s;
    }
}
"""

_FLAGS_NATIVE = ["-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno"]
_FLAGS_PLAIN = ["-O3", "-fPIC", "-shared", "-fno-math-errno"]
MIN_PARALLEL_ROWS = 16  # below this one thread does the rows (thread hand-off costs more)
ENABLED = True  # False: head_reduce declines and decoding uses torch (benchmarks compare both)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_why = "not built yet"
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _cache_dir() -> Path:
    return Path(os.environ.get("UNEMBED_CACHE", Path.home() / ".cache" / "unembed")) / "kernels"


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


def _compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _build(cc: str) -> Path:
    """Compile C_SOURCE into the cache (once per source, compiler and CPU) and return the .so."""
    key = hashlib.sha256("\0".join([C_SOURCE, cc, _compiler_version(cc), _cpu_key()]).encode()).hexdigest()[:20]
    folder = _cache_dir()
    lib = folder / f"head_reduce-{key}.so"
    if lib.is_file() and lib.stat().st_uid == os.getuid():
        return lib
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src, out = Path(tmp) / "head_reduce.c", Path(tmp) / "head_reduce.so"
        src.write_text(C_SOURCE, encoding="utf-8")
        errors = ""
        for flags in (_FLAGS_NATIVE, _FLAGS_PLAIN):  # -march=native is not known to every compiler
            cmd = [cc, *flags, str(src), "-o", str(out), "-lm"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                os.replace(out, lib)  # atomic: a concurrent process sees a whole file or none
                return lib
            errors = done.stderr.strip()[-500:]
        raise RuntimeError(f"{cc} failed: {errors}")


def _load() -> ctypes.CDLL | None:
    global _lib, _tried, _why
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        try:
            if os.environ.get("UNEMBED_KERNELS", "1").strip().lower() in ("0", "false", "no", "off"):
                _why = "disabled by UNEMBED_KERNELS=0"
            elif (cc := _compiler()) is None:
                _why = "no C compiler found (cc, gcc, clang or $CC)"
            else:
                lib = ctypes.CDLL(str(_build(cc)))
                fn = lib.head_reduce
                fn.restype = None
                p, i64 = ctypes.c_void_p, ctypes.c_int64
                fn.argtypes = [p, i64, i64, i64, p, p]
                _lib, _why = lib, "fused C kernel"
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            _why = f"build failed ({e}); using torch operations"
            log.warning("unembed: the fused vocabulary kernel is unavailable: %s", e)
        _tried = True
        return _lib


def status() -> str:
    """How the arg-max reduction runs here: 'fused C kernel' or why torch operations are used."""
    _load()
    return _why


def available() -> bool:
    return _load() is not None


def _workers(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != n:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_size = ThreadPoolExecutor(n, thread_name_prefix="unembed-head"), n
        return _pool


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
    bounds = [m * k // n for k in range(n + 1)]

    def part(k: int) -> None:
        a, b = bounds[k], bounds[k + 1]
        lib.head_reduce(x + 4 * a * ld, b - a, v, ld, t_ptr + 8 * a, c_ptr + 4 * a)

    for f in [_workers(n).submit(part, k) for k in range(n)]:
        f.result()
    return tok, conf
