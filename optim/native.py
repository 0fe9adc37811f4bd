"""The CPU step for fp32 tensors as one native call over a list of tensors.

``lion_cpu.c`` is built once per machine with the system C compiler (a fraction of a
second; the same compiler torch.compile needs on a CPU) into a cache directory, and
loaded with ctypes. One call steps every fp32 tensor of a group in one OpenMP region, so
a model of a hundred tensors pays one call's overhead per step instead of a hundred
compiled-kernel calls. Where no compiler works, :func:`library` returns None and the
caller keeps the compiled (inductor) kernel.

``LIONSWEEP_NATIVE=0`` turns it off (the compiled kernel then serves these tensors too);
``LIONSWEEP_CACHE_DIR`` moves the build cache (default ``~/.cache/lionsweep``).
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
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.graph import increment_version

log = logging.getLogger(__name__)

__all__ = ["enabled", "library", "step", "supports"]

_SOURCE = Path(__file__).with_name("lion_cpu.c")
# No fused multiply-add (the same roundings as the compiled kernel), comparisons that
# vectorize (no floating-point traps are wanted), one OpenMP region per call.
_FLAGS = ["-O3", "-ffp-contract=off", "-fno-trapping-math", "-fPIC", "-shared"]
# Below this many elements one thread does the whole call (waking a second one costs more).
_SERIAL_BELOW = 1 << 16

_PLAIN = (Tensor, torch.nn.Parameter)
_lock = threading.Lock()
_loaded: list[ctypes.CDLL | None] = []  # the one load attempt's result
error: str | None = None
"""Why the native step is unavailable in this process, once a build was tried and failed."""


def enabled() -> bool:
    """Whether the native step may be used (``LIONSWEEP_NATIVE`` is not ``0``)."""
    return os.environ.get("LIONSWEEP_NATIVE", "1") != "0"


def supports(param: Tensor, grad: Tensor, exp_avg: Tensor) -> bool:
    """Whether the native step can update this parameter: a plain contiguous fp32 CPU tensor
    whose gradient and momentum are too (subclasses, fake and inference tensors, negative views
    and a leaf that autograd would refuse to update in place take the other steps, which check
    them)."""
    tensors = (param, grad, exp_avg)
    return (
        all(type(t) in _PLAIN for t in tensors)
        and not any(t.is_neg() or t.is_conj() for t in tensors)
        and not (any(t.is_inference() for t in tensors) and not torch.is_inference_mode_enabled())
        and not (torch.is_grad_enabled() and param.requires_grad)
        and param.device.type == "cpu"
        and param.dtype == grad.dtype == exp_avg.dtype == torch.float32
        and grad.device.type == "cpu"
        and exp_avg.device.type == "cpu"
        and param.layout == torch.strided
        and not grad.is_sparse
        and param.is_contiguous()
        and grad.is_contiguous()
        and exp_avg.is_contiguous()
    )


def _cache_dir() -> Path:
    configured = os.environ.get("LIONSWEEP_CACHE_DIR")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lionsweep"


def _private_temp_dir() -> Path:
    """This user's directory in the temp directory, refused unless only this user can write
    to it (a library another user could plant there would run in this process)."""
    path = Path(tempfile.gettempdir()) / f"lionsweep-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise RuntimeError(f"{path} is not a private directory of this user")
    return path


def _compiler() -> str | None:
    found = (shutil.which(name) for name in (os.environ.get("CC"), "cc", "gcc", "clang") if name)
    return next(filter(None, found), None)


def _build(compiler: str, target: Path) -> None:
    """Compile the source into ``target`` (atomically: a concurrent build of the same file
    leaves one complete library), with OpenMP when the compiler has it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        errors = []
        for openmp in (["-fopenmp"], []):
            cmd = [compiler, *_FLAGS, *openmp, str(_SOURCE), "-o", tmp]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())  # never a short file under the final name
                os.chmod(tmp, 0o755)  # loadable by every user of a shared cache
                ctypes.CDLL(tmp)  # a library that does not load is not kept
                os.replace(tmp, target)
                return
            errors.append(done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"])
        raise RuntimeError(f"{Path(compiler).name} failed: {errors[0][0]}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def library() -> ctypes.CDLL | None:
    """The loaded native step, building it on first use; None where it is turned off or no
    compiler can build it (:data:`error` says why)."""
    if not enabled():
        return None
    if _loaded:
        return _loaded[0]
    with _lock:
        if not _loaded:
            _loaded.append(_load())
    return _loaded[0]


def _load() -> ctypes.CDLL | None:
    global error
    try:
        compiler = _compiler()
        if compiler is None:
            raise RuntimeError("no C compiler found (set CC)")
        digest = hashlib.sha256(
            _SOURCE.read_bytes() + " ".join([compiler, platform.machine(), *_FLAGS]).encode()
        ).hexdigest()[:16]
        path = _cache_dir() / f"lion_cpu-{digest}.so"
        try:
            if not path.exists():
                _build(compiler, path)
        except OSError:  # an unwritable cache: build in a private temp directory
            path = _private_temp_dir() / path.name
            if not path.exists():
                _build(compiler, path)
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:  # a damaged file in the cache: build it again
            _build(compiler, path)
            lib = ctypes.CDLL(str(path))
        fn = lib.lion_step_f32
        fn.restype = None
        fn.argtypes = [
            ctypes.c_int64,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_int64),
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int,
        ]
    except Exception as exc:  # noqa: BLE001 - the compiled kernel still serves
        error = f"{type(exc).__name__}: {exc}"
        log.info("native Lion step unavailable (%s); using the compiled kernel", error)
        return None
    return lib


def _overlapping(tensors: list[Tensor]) -> bool:
    spans = sorted(
        (t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()) for t in tensors if t.numel()
    )
    return any(start < end for (_, end), (start, _) in zip(spans, spans[1:], strict=False))


def step(
    lib: ctypes.CDLL,
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    hp: Tensor,
    nonfinite: Tensor | None,
) -> None:
    """Step these tensors in place with one native call (each is :func:`supports`-ed; ``hp``
    is :func:`optim.kernels.hyperparameter_tensor`'s fp32 CPU tensor, ``nonfinite`` an int64
    CPU scalar or None)."""
    n = len(params)
    if n == 0:
        return
    if nonfinite is not None and (nonfinite.dtype != torch.int64 or nonfinite.device.type != "cpu"):
        raise ValueError("nonfinite must be an int64 CPU tensor")
    pointers = ctypes.c_void_p * n
    sizes = [p.numel() for p in params]
    total = sum(sizes)
    threads = 1 if total < _SERIAL_BELOW else max(torch.get_num_threads(), 1)
    if threads > 1 and _overlapping(params + exp_avgs):
        threads = 1  # a parameter listed twice: stepped twice in turn, as tensor by tensor
    hp = hp.contiguous()
    lib.lion_step_f32(
        n,
        pointers(*[t.data_ptr() for t in params]),
        pointers(*[t.data_ptr() for t in grads]),
        pointers(*[t.data_ptr() for t in exp_avgs]),
        (ctypes.c_int64 * n)(*sizes),
        hp.data_ptr(),
        nonfinite.data_ptr() if nonfinite is not None else None,
        threads,
    )
    # Written through pointers, as an in-place op would: autograd must know (a tensor saved
    # for a backward and changed since then is an error, not a silently wrong gradient).
    changed = params + exp_avgs
    if nonfinite is not None:
        changed.append(nonfinite)
    increment_version(changed)
