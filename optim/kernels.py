"""The Lion step's entry point, :func:`lion`: reference (per tensor), foreach and fused.

All three step functions share one signature: parallel lists of params, grads
and momenta (``exp_avgs``) positionally, hyperparameters keyword-only. For the
fused path the lists hold whole contiguous tensors or one flat buffer per
device/dtype bucket (see :class:`optim.flat.FlatBucket`); fp32 CPU tensors are stepped by
one native call for the whole list (:mod:`optim.native`), every other tensor by
one compiled elementwise kernel call (:mod:`optim.compiled`) whose hyperparameters arrive as
a tensor, so changing them never recompiles. The math itself is in :mod:`optim.steps`.

The names other modules, the tests and the benchmark import from here stay importable here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from optim import native
from optim.compiled import _compiled_kernel, readiness
from optim.flat import FlatBucket
from optim.steps import _multi_tensor_lion, _single_tensor_lion, hyperparameter_tensor

__all__ = [
    "FlatBucket",
    "fused_supported",
    "hyperparameter_tensor",
    "lion",
    "readiness",
]


def lion(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
    impl: str,
    comps: list[Tensor | None] | None = None,
    nonfinite: Tensor | None = None,
) -> None:
    """Apply one Lion step in place with the chosen implementation.

    ``comps`` holds, per parameter, a Kahan compensation buffer (the rounding error of its
    last update, for a 16-bit parameter whose small updates would round away) or None.
    A coordinate whose gradient is not finite keeps its parameter and momentum this step,
    and ``nonfinite`` (an int64 scalar on the parameters' device) counts such coordinates;
    None skips them uncounted.
    """
    if impl == "reference":
        fn = _single_tensor_lion
    elif impl == "foreach":
        fn = _multi_tensor_lion
    elif impl == "fused":
        fn = _fused_lion
    else:
        raise ValueError(f"impl must be 'reference', 'foreach' or 'fused', got {impl!r}")
    if nonfinite is None and impl != "fused":  # the fused kernel has a variant that skips
        nonfinite = torch.zeros((), dtype=torch.int64, device=params[0].device if params else None)
    fn(
        params,
        grads,
        exp_avgs,
        comps if comps is not None else [None] * len(params),
        nonfinite,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        weight_decay=weight_decay,
        maximize=maximize,
    )


def _fused_lion(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    comps: list[Tensor | None],
    nonfinite: Tensor | None,
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """The update rule as one native call over every fp32 CPU tensor (see
    :mod:`optim.native`) and one compiled kernel call per other tensor: a flat buffer (one
    per bucket) or a contiguous parameter of its own."""
    hp_by_device: dict[torch.device, Tensor] = {}
    lib = native.library() if any(p.device.type == "cpu" for p in params) else None
    if lib is not None:
        picked = [
            i
            for i, (p, g, m, c) in enumerate(zip(params, grads, exp_avgs, comps, strict=True))
            if c is None and native.supports(p, g, m)
        ]
        if picked:
            hp = hp_by_device[torch.device("cpu")] = hyperparameter_tensor(
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=weight_decay,
                maximize=maximize,
                device="cpu",
            )
            native.step(
                lib,
                [params[i] for i in picked],
                [grads[i] for i in picked],
                [exp_avgs[i] for i in picked],
                hp,
                nonfinite,
            )
            if len(picked) == len(params):
                return
            done = set(picked)
            rest = [i for i in range(len(params)) if i not in done]
            params, grads, exp_avgs, comps = (
                [lst[i] for i in rest] for lst in (params, grads, exp_avgs, comps)
            )
    for param, grad, exp_avg, comp in zip(params, grads, exp_avgs, comps, strict=True):
        hp = hp_by_device.get(param.device)
        if hp is None:
            hp = hp_by_device[param.device] = hyperparameter_tensor(
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=weight_decay,
                maximize=maximize,
                device=param.device,
            )
        # Flat views of whole tensors: one graph (sizes symbolic) serves them all.
        flat = [t.view(-1) for t in (param, grad, exp_avg) + ((comp,) if comp is not None else ())]
        kernel = _compiled_kernel(
            comp is not None, nonfinite is not None, param.dtype, exp_avg.dtype, param.device.type
        )
        kernel(*flat[:3], hp, nonfinite, *flat[3:])


_PLAIN_TENSORS = (Tensor, torch.nn.Parameter)


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


MIN_FUSED_NUMEL = 4096
"""With ``impl="auto"`` smaller tensors take the foreach step: a compiled-kernel call costs
more than they do."""


def fused_supported(param: Tensor) -> bool:
    """Whether the fused step can run for this parameter."""
    if param.is_sparse or param.layout != torch.strided or param.is_complex():
        return False
    if param.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return False
    if param.device.type == "cpu":
        return True
    if param.device.type == "cuda":
        from torch.utils._triton import has_triton

        return has_triton()
    return False
