"""The Lion step's math: the reference step (one tensor at a time), the foreach step (torch's
multi-tensor ops) and the elementwise kernel body that :mod:`optim.compiled` compiles.

The step functions share one signature: parallel lists of params, grads, momenta
(``exp_avgs``) and Kahan buffers (``comps``, None where a parameter has none) and a
non-finite counter positionally, hyperparameters keyword-only.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

__all__ = ["hyperparameter_tensor"]

# The foreach step works on chunks of about this many elements at a time.
_FOREACH_CHUNK = 1 << 20


def _single_tensor_lion(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    comps: list[Tensor | None],
    nonfinite: Tensor,
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """The update rule, one tensor at a time, in fp32 (the readable truth)."""
    for param, grad, exp_avg, comp in zip(params, grads, exp_avgs, comps, strict=True):
        g = grad.float()
        if maximize:
            g = g.neg()
        m = exp_avg.float()
        p = param.float()
        update = m.mul(beta1).add_(g, alpha=1 - beta1).sign_()
        new_p = p.mul(1 - lr * weight_decay).sub_(update.mul_(lr))
        new_m = m.mul(beta2).add_(g, alpha=1 - beta2)
        # A non-finite gradient leaves its coordinate as it was, and is counted.
        ok = torch.isfinite(g)
        nonfinite.add_(ok.numel() - ok.sum())
        new_p = torch.where(ok, new_p, p)
        new_m = torch.where(ok, new_m, m)
        if comp is not None:
            # Kahan: add last step's rounding error, round, keep this step's error.
            exact = new_p.add_(comp.float())
            param.copy_(exact)
            comp.copy_(exact.sub_(param.float()))
        else:
            param.copy_(new_p)
        exp_avg.copy_(new_m)


def _as_fp32(tensors: list[Tensor]) -> list[Tensor]:
    if all(t.dtype == torch.float32 for t in tensors):
        return tensors
    return [t.float() for t in tensors]


def _multi_tensor_lion(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    comps: list[Tensor | None],
    nonfinite: Tensor,
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """The update rule with torch._foreach_* ops over each device/dtype bucket.

    Tensors whose gradient has a non-finite value (found by one max-norm pass over the
    gradients) and tensors with a Kahan buffer take the per-tensor step; inside a compiled
    step every tensor does, since the check would read values back.
    """
    hyper = {
        "lr": lr,
        "beta1": beta1,
        "beta2": beta2,
        "weight_decay": weight_decay,
        "maximize": maximize,
    }
    if torch.compiler.is_compiling():
        _single_tensor_lion(params, grads, exp_avgs, comps, nonfinite, **hyper)
        return
    finite = [True] * len(grads)
    sized = [i for i, g in enumerate(grads) if g.numel()]
    if sized:
        norms = torch._foreach_norm([grads[i] for i in sized], float("inf"))
        for i, ok in zip(sized, torch.stack(norms).isfinite().tolist(), strict=True):
            finite[i] = ok
    slow = [i for i in range(len(params)) if not finite[i] or comps[i] is not None]
    if slow:
        pick = [params, grads, exp_avgs, comps]
        _single_tensor_lion(*[[lst[i] for i in slow] for lst in pick], nonfinite, **hyper)
        fast = [i for i in range(len(params)) if i not in set(slow)]
        params, grads, exp_avgs = ([lst[i] for i in fast] for lst in (params, grads, exp_avgs))
    buckets: dict[tuple, tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
    for param, grad, exp_avg in zip(params, grads, exp_avgs, strict=True):
        bucket = buckets[(param.device, param.dtype, exp_avg.dtype)]
        bucket[0].append(param)
        bucket[1].append(grad)
        bucket[2].append(exp_avg)
    for bucket in buckets.values():
        for dev_params, dev_grads, dev_exp_avgs in _chunks(*bucket):
            _multi_tensor_lion_bucket(
                dev_params,
                dev_grads,
                dev_exp_avgs,
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=weight_decay,
                maximize=maximize,
            )


def _chunks(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor]):
    """Split the lists so the step's temporaries stay small enough to be reused."""
    start, size = 0, 0
    for i, p in enumerate(params):
        size += p.numel()
        if size >= _FOREACH_CHUNK or i == len(params) - 1:
            yield params[start : i + 1], grads[start : i + 1], exp_avgs[start : i + 1]
            start, size = i + 1, 0


def _multi_tensor_lion_bucket(
    dev_params: list[Tensor],
    dev_grads: list[Tensor],
    dev_exp_avgs: list[Tensor],
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """The foreach update over one device/dtype chunk."""
    g = _as_fp32(dev_grads)
    if maximize:
        g = torch._foreach_neg(g)
    m = _as_fp32(dev_exp_avgs)
    p = _as_fp32(dev_params)
    update = torch._foreach_mul(m, beta1)
    torch._foreach_add_(update, g, alpha=1 - beta1)
    torch._foreach_sign_(update)
    if isinstance(lr, Tensor):
        # A tensor lr (a compiled step, an lr scheduler's tensor) is never read back.
        if weight_decay != 0:
            torch._foreach_mul_(p, 1 - lr * weight_decay)
        torch._foreach_mul_(update, lr)
        torch._foreach_sub_(p, update)
    else:
        if weight_decay != 0:
            torch._foreach_mul_(p, 1 - lr * weight_decay)
        torch._foreach_add_(p, update, alpha=-lr)
    torch._foreach_mul_(m, beta2)
    torch._foreach_add_(m, g, alpha=1 - beta2)
    if p is not dev_params:
        torch._foreach_copy_(dev_params, p)
    if m is not dev_exp_avgs:
        torch._foreach_copy_(dev_exp_avgs, m)


def hyperparameter_tensor(
    *, lr: float | Tensor, beta1: float, beta2: float, weight_decay: float, maximize: bool, device
) -> Tensor:
    """Pack the step's scalars as the fp32 tensor the fused kernel reads (a tensor lr is
    packed on its device without being read back)."""
    if isinstance(lr, Tensor):
        rest = torch.tensor(
            [beta1, 1 - beta1, beta2, 1 - beta2, -1.0 if maximize else 1.0],
            dtype=torch.float32,
            device=device,
        )
        lr32 = lr.detach().to(device=device, dtype=torch.float32).reshape(1)
        return torch.cat([1 - lr32 * weight_decay, -lr32, rest])
    values = [
        1 - lr * weight_decay,
        -lr,
        beta1,
        1 - beta1,
        beta2,
        1 - beta2,
        -1.0 if maximize else 1.0,
    ]
    return torch.tensor(values, dtype=torch.float32, device=device)


def _lion_flat_kernel(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    hp: Tensor,
    nonfinite: Tensor | None,
    comp: Tensor | None = None,
) -> None:
    """The update rule over a flat tensor; compiled into one elementwise kernel.

    With ``comp`` (16-bit parameters, Kahan compensation) the rounding error of each update
    is kept there and added to the next one.
    """
    decay, neg_lr, beta1, one_minus_beta1, beta2, one_minus_beta2, grad_sign = hp.unbind()
    g = grad.float() * grad_sign
    m = exp_avg.float()
    p = param.float()
    c = m * beta1 + g * one_minus_beta1
    ok = torch.isfinite(g)
    # Inductor lowers sign(x) to (0 < x) - (x < 0): sign(0) = 0 and, as in
    # eager torch.sign, sign(NaN) = 0. A non-finite gradient leaves its coordinate.
    new = torch.where(ok, p * decay + torch.sign(c) * neg_lr, p)
    if comp is None:
        param.copy_(new)
    else:
        exact = new + comp.float()
        rounded = exact.to(param.dtype)
        param.copy_(rounded)
        comp.copy_(exact - rounded.float())
    exp_avg.copy_(torch.where(ok, m * beta2 + g * one_minus_beta2, m))
    if nonfinite is not None:
        # The count reads the momentum just written (a test that is always true), so
        # inductor orders it after the update and fuses it into the same loop: counted, the
        # kernel streams the gradient once, as fast as uncounted (a count that reads only
        # the gradient is a second pass over it, a third slower on a CPU).
        e = exp_avg
        nonfinite.add_((~ok & ((e == e) | (e != e))).sum())
