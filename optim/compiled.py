"""The compiled Lion kernel: one ``torch.compile``-d variant of
:func:`optim.steps._lion_flat_kernel` per dtype pair, device type and variant, built ahead of
time, and :data:`readiness`, which builds missing ones in the background.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import tempfile
import threading
import types

import torch
from torch import Tensor

from optim.flat import _ALIGN
from optim.steps import _lion_flat_kernel, hyperparameter_tensor

log = logging.getLogger(__name__)

__all__ = ["readiness"]


class _Readiness:
    """Which compiled kernels are built in this process, building missing ones in a
    background thread (the first compile takes 10–15 s on a CPU with an empty inductor
    cache; the caller steps with foreach meanwhile). The thread compiles in a child process
    and loads the result (see :func:`_build_elsewhere`), so nothing is traced in this
    process while the user's own compiled code may run.

    The thread is not a daemon: a script that ends while it compiles waits for it at exit,
    since a compile cut off by interpreter shutdown aborts the process (SIGABRT).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[tuple, threading.Event] = {}
        self.errors: dict[tuple, BaseException] = {}

    def ready(
        self,
        device: torch.device,
        dtype: torch.dtype,
        momentum_dtype: torch.dtype,
        kahan: bool,
        block: bool,
        count: bool = True,
    ) -> bool:
        """True once the kernel for this combination is compiled; starts compiling it (in the
        background unless ``block``) the first time. A failed compile raises when ``block``,
        else it stays not ready and :attr:`errors` holds why."""
        key = (device.type, dtype, momentum_dtype, kahan, count)
        with self._lock:
            done = self._done.get(key)
            start = done is None
            if start:
                done = self._done[key] = threading.Event()
        if start:
            if block:
                self._build(key, device, done)
            else:
                threading.Thread(
                    target=self._build, args=(key, device, done), daemon=False, name="lion-compile"
                ).start()
        if block:
            done.wait()
            if key in self.errors:
                raise self.errors[key]
        return done.is_set() and key not in self.errors

    def _build(self, key: tuple, device: torch.device, done: threading.Event) -> None:
        try:
            if threading.current_thread() is threading.main_thread():
                _build_here(key, device)
            else:
                _build_elsewhere(key, device)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            self.errors[key] = exc
        finally:
            done.set()


def _example_inputs(key: tuple, device: torch.device) -> list[Tensor | None]:
    _, dtype, momentum_dtype, kahan, count = key
    n = 2 * _ALIGN
    return [
        torch.zeros(n, dtype=dtype, device=device),
        torch.zeros(n, dtype=dtype, device=device),
        torch.zeros(n, dtype=momentum_dtype, device=device),
        hyperparameter_tensor(
            lr=0.0, beta1=0.9, beta2=0.99, weight_decay=0.0, maximize=False, device=device
        ),
        torch.zeros((), dtype=torch.int64, device=device) if count else None,
        *([torch.zeros(n, dtype=dtype, device=device)] if kahan else []),
    ]


def _build_here(key: tuple, device: torch.device) -> _Kernel:
    """Compile the kernel for ``key`` in this thread."""
    _, dtype, momentum_dtype, kahan, count = key
    kernel = _compiled_kernel(kahan, count, dtype, momentum_dtype, device.type)
    with torch.no_grad():
        kernel.build(*_example_inputs(key, device))
    return kernel


def _build_elsewhere(key: tuple, device: torch.device) -> None:
    """Compile the kernel for ``key`` in a child process and load the result here.

    Compiling traces with torch.fx, which sets a process-wide flag: a user's
    ``torch.compile``-d model called from another thread meanwhile fails ("Detected that you
    are using FX to symbolically trace a dynamo-optimized function"). Loading a saved
    ahead-of-time compiled function traces nothing. Where the child or the load fails, the
    kernel is compiled in this thread after all (the child has warmed the inductor cache).
    """
    _, dtype, momentum_dtype, kahan, count = key
    kernel = _compiled_kernel(kahan, count, dtype, momentum_dtype, device.type)
    with tempfile.TemporaryDirectory(prefix="lion-kernel-") as tmp:
        out = os.path.join(tmp, "kernel.bin")
        names = [str(t).removeprefix("torch.") for t in (dtype, momentum_dtype)]
        args = [kahan, count, *names, str(device), out]
        code = f"from optim.compiled import _save_kernel; _save_kernel(*{args!r})"
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            raise RuntimeError(f"compiling the Lion kernel failed: {last}")
        try:
            with open(out, "rb") as f:
                fn = torch.compiler.load_compiled_function(
                    f, f_globals=_lion_flat_kernel.__globals__
                )
            fn.disable_guard_check()
            with torch.no_grad():
                fn(*_example_inputs(key, device))
        except Exception as exc:  # noqa: BLE001 - compiled here instead
            log.debug("loading the precompiled Lion kernel failed: %r", exc)
            _build_here(key, device)
            return
    kernel._precompiled = fn


def _save_kernel(
    kahan: bool, count: bool, dtype: str, momentum_dtype: str, device: str, out: str
) -> None:
    """Compile one kernel variant and save it to ``out`` (run in a child process by
    :func:`_build_elsewhere`)."""
    where = torch.device(device)
    key = (where.type, getattr(torch, dtype), getattr(torch, momentum_dtype), kahan, count)
    kernel = _build_here(key, where)
    if kernel._precompiled is None:
        raise RuntimeError("ahead-of-time compiling is unavailable")
    kernel._precompiled.save_compiled_function(out)


readiness = _Readiness()
"""The process's compiled-kernel readiness (shared by every optimizer)."""


class _Kernel:
    """One compiled variant of :func:`_lion_flat_kernel` for one device type.

    :meth:`build` compiles it ahead of time from example inputs (dynamo's ``aot_compile``),
    so a call skips dynamo's guard evaluation and frame handling, a fixed cost of tens of
    microseconds that a model of a hundred tensors pays a hundred times per step. Every
    input is known to fit (contiguous 1-D tensors of the variant's dtypes and device, sizes
    symbolic), since the variant and device are this object's key. Where ahead-of-time
    compiling is unavailable, or :meth:`build` has not run, calls go through
    ``torch.compile`` as usual.
    """

    def __init__(self, compiled) -> None:
        self._compiled = compiled
        self._precompiled = None

    def build(self, *args: Tensor | None) -> None:
        """Compile for inputs like ``args`` (1-D tensors, sizes symbolic) and run it once on
        them."""
        for t in args[:3] + args[5:]:
            torch._dynamo.mark_dynamic(t, 0)
        aot_compile = getattr(self._compiled, "aot_compile", None)
        if aot_compile is not None:
            try:
                fn = aot_compile((args, {}))
                fn.disable_guard_check()
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - the guarded path below still works
                log.debug("ahead-of-time compile of the Lion kernel failed: %r", exc)
            else:
                self._precompiled = fn
                return
        self._compiled(*args)

    def __call__(self, *args: Tensor | None) -> None:
        """Run the kernel on flat tensors (param, grad, exp_avg, hp, nonfinite[, comp])."""
        if self._precompiled is not None:
            self._precompiled(*args)
            return
        for t in args[:3] + args[5:]:
            torch._dynamo.mark_dynamic(t, 0)
        self._compiled(*args)


@functools.cache
def _compiled_kernel(
    kahan: bool = False,
    count: bool = True,
    dtype: torch.dtype = torch.float32,
    momentum_dtype: torch.dtype = torch.float32,
    device_type: str = "cpu",
) -> _Kernel:
    # One compiled function per variant, dtype pair and device type for the whole process:
    # every optimizer (every trial) shares it, and sizes are marked dynamic, so a model of
    # another size reuses the same graph. Each variant gets its own code object, so dynamo
    # counts its recompiles apart (they would otherwise share one limit of 8). With a dynamic
    # size, inductor's C++ backend picks serial vs parallel from the size seen at the first
    # compile (a small model would leave a big one on one core), so the loop always gets an
    # OpenMP region and the runtime chooses the thread count.
    base = _lion_flat_kernel
    kind = f"{'kahan' if kahan else 'plain'}_{'count' if count else 'mask'}"
    name = f"{base.__name__}_{kind}_{dtype}_{momentum_dtype}_{device_type}"
    code = base.__code__.replace(co_name=name.replace(".", "_"))
    fn = types.FunctionType(code, base.__globals__, code.co_name, base.__defaults__)
    # Kahan's error term is exact − float(bf16(exact)): inductor must really round there
    # (by default it may keep the value in fp32 across a down-and-up cast).
    options = {"cpp.dynamic_threads": True, "emulate_precision_casts": kahan}
    with torch._dynamo.config.patch(enable_aot_compile=True):
        compiled = torch.compile(fn, fullgraph=True, dynamic=False, options=options)
    return _Kernel(compiled)
