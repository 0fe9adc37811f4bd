"""The Lion step's entry point, :func:`lion`: reference (per tensor), foreach and fused.

The step functions share one signature: parallel lists of params, grads, momenta
(``exp_avgs``) and Kahan buffers positionally, hyperparameters keyword-only. Which step
serves which tensor is :func:`optim.dispatch.plan`'s answer. The fused steps take whole
contiguous tensors or one flat buffer per device/dtype bucket (see
:class:`optim.flat.FlatBucket`): fp32 CPU tensors are stepped by one native call for the
whole list (:mod:`optim.native`), every other tensor by one compiled elementwise kernel call
(:mod:`optim.compiled`) whose hyperparameters arrive as a tensor, so changing them never
recompiles. The math itself is in :mod:`optim.steps`.

The names the package, its tests and its benchmark import from here stay importable here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from optim import dispatch, native, triton_lion
from optim.compiled import _compiled_kernel, readiness
from optim.dispatch import MIN_FUSED_NUMEL, fused_supported, is_dtensor, local
from optim.flat import FlatBucket
from optim.steps import _multi_tensor_lion, _single_tensor_lion, hyperparameter_tensor

__all__ = [
    "MIN_FUSED_NUMEL",
    "FlatBucket",
    "fused_supported",
    "hyperparameter_tensor",
    "is_dtensor",
    "lion",
    "local",
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

    ``impl`` is ``"reference"``, ``"foreach"`` or ``"fused"`` (each tensor to the native
    call, the Triton or compiled kernel, or foreach as :func:`optim.dispatch.plan` decides),
    or one of plan's steps, ``"native"``, ``"triton"`` or ``"compiled"``, run on every tensor
    given (for a caller that has planned). ``comps`` holds, per parameter, a Kahan
    compensation buffer (the rounding error of its last update, for a 16-bit parameter whose
    small updates would round away) or None. A coordinate whose gradient is not finite keeps
    its parameter and momentum this step, and ``nonfinite`` (an int64 scalar on the
    parameters' device) counts such coordinates; None skips them uncounted.
    """
    if impl not in _STEPS and impl != "fused":
        raise ValueError(
            "impl must be 'reference', 'foreach', 'fused', 'native', 'triton' or 'compiled', "
            f"got {impl!r}"
        )
    lists = (params, grads, exp_avgs, comps if comps is not None else [None] * len(params))
    parts = dispatch.plan(*lists, impl="fused") if impl == "fused" else {impl: None}
    for step, picked in parts.items():
        if picked is None or len(picked) == len(params):
            part = lists
        else:
            part = tuple([lst[i] for i in picked] for lst in lists)
        count = nonfinite
        if count is None and step in ("reference", "foreach"):  # these two always count
            device = part[0][0].device if part[0] else None
            count = torch.zeros((), dtype=torch.int64, device=device)
        _STEPS[step](
            *part,
            count,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=weight_decay,
            maximize=maximize,
        )


def _native_lion(
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
    """The update rule as one native call over fp32 CPU tensors (each one
    :func:`optim.native.supports`, none with a Kahan buffer)."""
    lib = native.library()
    if lib is None:
        raise RuntimeError(f"the native Lion step is unavailable ({native.error})")
    hp = hyperparameter_tensor(
        lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, maximize=maximize, device="cpu"
    )
    native.step(lib, params, grads, exp_avgs, hp, nonfinite)


def _compiled_lion(
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
    """The update rule as one compiled kernel call per tensor: a flat buffer (one per
    bucket) or a contiguous parameter of its own."""
    hyper = {"lr": lr, "beta1": beta1, "beta2": beta2, "weight_decay": weight_decay}
    for param, grad, exp_avg, comp, hp in _with_hyperparameters(
        params, grads, exp_avgs, comps, maximize=maximize, **hyper
    ):
        # Flat views of whole tensors: one graph (sizes symbolic) serves them all.
        flat = [t.view(-1) for t in (param, grad, exp_avg) + ((comp,) if comp is not None else ())]
        kernel = _compiled_kernel(
            comp is not None, nonfinite is not None, param.dtype, exp_avg.dtype, param.device.type
        )
        kernel(*flat[:3], hp, nonfinite, *flat[3:])


def _triton_lion(
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
    """The update rule as one Triton kernel launch per tensor (:mod:`optim.triton_lion`): a
    flat buffer (one per bucket) or a contiguous parameter of its own."""
    hyper = {"lr": lr, "beta1": beta1, "beta2": beta2, "weight_decay": weight_decay}
    for param, grad, exp_avg, comp, hp in _with_hyperparameters(
        params, grads, exp_avgs, comps, maximize=maximize, **hyper
    ):
        triton_lion.lion_flat(param, grad, exp_avg, hp, nonfinite, comp)


def _with_hyperparameters(params, grads, exp_avgs, comps, **hyper):
    """Each tensor's (param, grad, exp_avg, comp) with the step's scalars packed on its device
    (:func:`optim.steps.hyperparameter_tensor`, one pack per device)."""
    packed: dict[torch.device, Tensor] = {}
    for param, grad, exp_avg, comp in zip(params, grads, exp_avgs, comps, strict=True):
        hp = packed.get(param.device)
        if hp is None:
            hp = packed[param.device] = hyperparameter_tensor(device=param.device, **hyper)
        yield param, grad, exp_avg, comp, hp


_STEPS = {
    "native": _native_lion,
    "triton": _triton_lion,
    "compiled": _compiled_lion,
    "foreach": _multi_tensor_lion,
    "reference": _single_tensor_lion,
}
"""Each of :func:`optim.dispatch.plan`'s steps by name."""
