"""Flat buffers: a group's parameters, gradients and momenta moved into one buffer each
(``Lion(..., flatten=True)``), so one kernel call steps them all."""

from __future__ import annotations

import operator

import torch
from torch import Tensor

__all__ = ["FlatBucket"]

# Flat-buffer offsets are multiples of this many elements (64 bytes of fp32),
# so every view starts on a vector/cache-line boundary.
_ALIGN = 16


class FlatBucket:
    """Parameters of one group on one device and dtype, living in flat buffers.

    Building a bucket copies every parameter into one flat buffer and re-points
    ``param.data`` at its slice; gradients are kept as views into a flat grad
    buffer (autograd then accumulates into them in place) and momenta as views
    into a flat momentum buffer of ``momentum_dtype``.
    """

    def __init__(
        self, params: list[Tensor], momentum_dtype: torch.dtype, compensated: bool = False
    ):
        first = params[0]
        self.params = list(params)
        offsets, total = [], 0
        for p in self.params:
            offsets.append(total)
            total += -(-p.numel() // _ALIGN) * _ALIGN
        total = max(total, _ALIGN)
        kw = {"device": first.device}
        self.param = torch.zeros(total, dtype=first.dtype, **kw)
        self.grad = torch.zeros(total, dtype=first.dtype, **kw)
        self.exp_avg = torch.zeros(total, dtype=momentum_dtype, **kw)
        self.comp = torch.zeros(total, dtype=first.dtype, **kw) if compensated else None
        for buf in (self.param, self.grad, self.exp_avg, self.comp):
            if buf is not None:
                torch._dynamo.mark_dynamic(buf, 0)
        self.param_views, self.grad_views, self.exp_avg_views = [], [], []
        self.comp_views: list[Tensor] = []
        for p, off in zip(self.params, offsets, strict=True):
            n, shape = p.numel(), p.shape
            pv = self.param[off : off + n].view(shape)
            gv = self.grad[off : off + n].view(shape)
            pv.copy_(p.detach())
            p.data = pv
            if p.grad is not None:
                gv.copy_(p.grad)
                p.grad = gv
            self.param_views.append(pv)
            self.grad_views.append(gv)
            self.exp_avg_views.append(self.exp_avg[off : off + n].view(shape))
            if self.comp is not None:
                self.comp_views.append(self.comp[off : off + n].view(shape))
        self._data_ptrs = [pv.data_ptr() for pv in self.param_views]

    def is_current(self) -> bool:
        """Whether every parameter still lives in this bucket's flat buffer."""
        return [p.data_ptr() for p in self.params] == self._data_ptrs

    def sync_grads(self) -> bool:
        """Bring fresh gradients into the flat grad buffer; False if any grad is None."""
        grads = [p.grad for p in self.params]
        if all(map(operator.is_, grads, self.grad_views)):
            return True  # the steady state: autograd accumulated into the views
        if any(g is None for g in grads):
            return False
        stale = [
            i for i, (g, gv) in enumerate(zip(grads, self.grad_views, strict=True)) if g is not gv
        ]
        if any(grads[i].is_sparse for i in stale):
            raise RuntimeError("Lion does not support sparse gradients")
        torch._foreach_copy_([self.grad_views[i] for i in stale], [grads[i] for i in stale])
        for i in stale:
            self.params[i].grad = self.grad_views[i]
        return True
