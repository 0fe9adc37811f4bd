"""Which step serves which tensor: the one place where a Lion step is chosen.

:func:`plan` splits a list of tensors between the steps (the native CPU call, the compiled
kernel, foreach, reference); :class:`optim.Lion` (per tensor and for flat buffers) and
:func:`optim.kernels.lion` (``impl="fused"``) all ask it, so a tensor falls back the same way
whichever of them asked. It decides from the tensors and its arguments alone: whether the
native library loads and whether a compiled kernel is built come in as callables.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from optim import native, triton_lion

__all__ = [
    "FUSED_IMPLS",
    "MIN_FUSED_NUMEL",
    "STEPS",
    "effective_impl",
    "KERNEL_ENV",
    "fused_supported",
    "is_dtensor",
    "kernel_for",
    "local",
    "plan",
]

STEPS = ("native", "triton", "compiled", "foreach", "reference")
"""The steps :func:`plan` names, in the order a caller runs them."""

KERNEL_ENV = "LIONSWEEP_LION_KERNEL"
"""Which kernel serves the fused step of a tensor the native call does not: ``auto`` (the
default: the hand-written Triton kernel on CUDA where Triton is installed, else the
``torch.compile``-d one), ``triton`` (Triton wherever :func:`optim.triton_lion.available`
says it runs, e.g. CPU tensors under ``TRITON_INTERPRET=1``) or ``compiled``."""

FUSED_IMPLS = ("auto", "fused")
"""The impls that use the fused steps (the native call and the compiled kernel)."""

MIN_FUSED_NUMEL = 4096
"""With ``impl="auto"`` smaller tensors take the foreach step: a compiled-kernel call costs
more than they do."""

_PLAIN_TENSORS = (Tensor, torch.nn.Parameter)
_FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def is_dtensor(t: Tensor) -> bool:
    """Whether ``t`` is a DTensor (a sharded tensor of torch.distributed)."""
    if type(t) in _PLAIN_TENSORS or not torch.distributed.is_available():
        return False  # the common case, asked for every tensor every step: kept cheap
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def local(t: Tensor | None) -> Tensor | None:
    """A DTensor's local shard (sharing its storage), any other tensor itself: the update is
    elementwise, so stepping the shards steps the whole."""
    return t.to_local() if t is not None and is_dtensor(t) else t


def fused_supported(param: Tensor) -> bool:
    """Whether the fused steps can serve this parameter at all (layout, dtype and device)."""
    if param.is_sparse or param.layout != torch.strided or param.is_complex():
        return False
    if param.dtype not in _FUSED_DTYPES:
        return False
    if param.device.type == "cpu":
        return True
    if param.device.type == "cuda":
        from torch.utils._triton import has_triton

        return has_triton()
    return False


def kernel_for(device: torch.device) -> str:
    """The fused kernel for tensors on ``device``, ``"triton"`` or ``"compiled"``, as
    :data:`KERNEL_ENV` asks (an unknown value raises ``ValueError``)."""
    wanted = os.environ.get(KERNEL_ENV, "auto") or "auto"
    if wanted not in ("auto", "triton", "compiled"):
        raise ValueError(f"{KERNEL_ENV} must be 'auto', 'triton' or 'compiled', got {wanted!r}")
    if wanted == "compiled":
        return "compiled"
    if wanted == "auto" and device.type != "cuda":
        return "compiled"
    return "triton" if triton_lion.available(device) else "compiled"


def effective_impl(impl: str, *, tracing: bool = False, fused_failed: bool = False) -> str:
    """The impl a step runs with: ``impl`` itself, except ``"foreach"`` for ``"auto"`` and
    ``"fused"`` inside a traced (``torch.compile``-d) step, and for ``"auto"`` once a fused
    kernel failed to build or to run (``fused_failed``)."""
    if impl in FUSED_IMPLS and (tracing or (impl == "auto" and fused_failed)):
        return "foreach"
    return impl


def _unsupported(param: Tensor) -> RuntimeError:
    return RuntimeError(f"impl='fused' does not support {param.dtype} parameters on {param.device}")


def _dense(param: Tensor, grad: Tensor, exp_avg: Tensor) -> bool:
    return (
        all(t.layout == torch.strided and t.is_contiguous() for t in (param, grad, exp_avg))
        and grad.dtype == param.dtype
    )


def plan(
    params: Sequence[Tensor],
    grads: Sequence[Tensor] | None = None,
    exp_avgs: Sequence[Tensor] | None = None,
    comps: Sequence[Tensor | None] | None = None,
    *,
    impl: str,
    flat: bool = False,
    native_library: Callable[[], object] = native.library,
    ready: Callable[[Tensor, Tensor, bool], bool] | None = None,
    kernel: Callable[[torch.device], str] = kernel_for,
) -> dict[str, list[int]]:
    """Which step serves each tensor: ``{step: [indices]}``, steps in :data:`STEPS` order,
    empty ones left out.

    ``impl`` is the impl to run with (:func:`effective_impl` turns ``"auto"``/``"fused"`` into
    ``"foreach"`` in a traced step and after a failure). The rules, per tensor (a DTensor's
    local shard), in this order:

    1. ``"reference"`` and ``"foreach"`` take every tensor, whatever it is.
    2. ``"auto"`` and ``"fused"``: a tensor with no Kahan buffer (``comps[i]`` None) that
       :func:`optim.native.supports` with its grad and momentum (a plain contiguous fp32 CPU
       tensor, any size) takes ``"native"`` when ``native_library()`` gives a library (it is
       asked at most once, and only when some tensor could use it).
    3. A parameter the fused steps cannot serve (:func:`fused_supported`: sparse or complex,
       a dtype other than fp32/bf16/fp16, a device other than the CPU or CUDA with Triton)
       makes ``"fused"`` raise ``RuntimeError``; ``"auto"`` gives it to ``"foreach"``.
    4. A fused kernel takes a tensor of at least :data:`MIN_FUSED_NUMEL` elements with
       ``"auto"`` (2 with ``"fused"``, and any size when ``flat``: each is a flat buffer, one
       call whatever its size) whose param, grad and momentum are contiguous, grad in the
       param's dtype: ``"triton"`` when ``kernel(device)`` says so (:func:`kernel_for`:
       CUDA with Triton installed; nothing to build first), else ``"compiled"`` once
       ``ready(param, exp_avg, compensated)`` says its kernel is built (``ready`` is asked
       only for such tensors, in order; it may wait for the build, and None means "build it
       on first call").
    5. ``"foreach"`` takes the rest.

    Without ``grads`` (building flat buffers, before any gradient) only rules 1 and 3 apply:
    the tensors a fused step may serve are under ``"fused"``, the rest under ``"foreach"``.
    """
    if impl not in ("reference", "foreach", *FUSED_IMPLS):
        raise ValueError(f"impl must be 'auto', 'reference', 'foreach' or 'fused', got {impl!r}")
    everything = list(range(len(params)))
    if impl in ("reference", "foreach"):
        return {impl: everything} if everything else {}
    parts: dict[str, list[int]] = {}
    if grads is None:
        for i, param in enumerate(params):
            supported = fused_supported(local(param))
            if not supported and impl == "fused":
                raise _unsupported(local(param))
            parts.setdefault("fused" if supported else "foreach", []).append(i)
        return {name: parts[name] for name in ("fused", "foreach") if name in parts}
    if exp_avgs is None:
        raise ValueError("plan needs exp_avgs with grads")
    least = 2 if flat or impl == "fused" else MIN_FUSED_NUMEL
    library: list[object] = []  # native_library()'s answer, once asked
    kernels: dict[torch.device, str] = {}  # kernel(device)'s answers
    for i in everything:
        param, grad, exp_avg = local(params[i]), local(grads[i]), local(exp_avgs[i])
        compensated = comps is not None and comps[i] is not None
        if not compensated and native.supports(param, grad, exp_avg):
            if not library:
                library.append(native_library())
            if library[0] is not None:
                parts.setdefault("native", []).append(i)
                continue
        if not fused_supported(param):
            if impl == "fused":
                raise _unsupported(param)
            step = "foreach"
        elif param.numel() >= least and _dense(param, grad, exp_avg):
            step = kernels.get(param.device) or kernels.setdefault(
                param.device, kernel(param.device)
            )  # asked once per device and call
            if step == "compiled" and ready is not None and not ready(param, exp_avg, compensated):
                step = "foreach"
        else:
            step = "foreach"
        parts.setdefault(step, []).append(i)
    return {name: parts[name] for name in STEPS if name in parts}
