"""The Lion step as a hand-written Triton kernel: the fused step for CUDA tensors.

One launch steps one flat tensor (a whole contiguous parameter, or a group's flat buffer),
reading the step's scalars from the same 7-element fp32 tensor the compiled kernel reads
(:func:`optim.kernels.hyperparameter_tensor`), so a tensor lr is never read back and
changing a hyperparameter never recompiles. The math is fp32 whatever the parameter's and
momentum's dtypes (fp32, bf16, fp16); a coordinate whose gradient is NaN or infinite keeps
its parameter and momentum, and is counted into an int64 scalar when one is given; with a
Kahan buffer the rounding error of each update is kept and added to the next.

Triton is optional: without it (or on a device it cannot drive) :func:`available` is False
and the caller uses the compiled kernel. Under ``TRITON_INTERPRET=1`` Triton runs the kernel
through its interpreter on CPU tensors, which is how the tests check it without a GPU.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

try:  # optional: the CPU build of torch does not need it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where Triton is missing
    triton = None
    tl = None

__all__ = ["BLOCK", "available", "interpreting", "lion_flat"]

BLOCK = 1024
"""Elements each program steps (a multiple of the warp width; 4 warps of 8 per thread)."""


def interpreting() -> bool:
    """Whether Triton runs kernels through its interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def available(device: torch.device) -> bool:
    """Whether the Triton kernel can step tensors on ``device``: a CUDA device with Triton
    installed, or any CPU tensor while Triton interprets."""
    if triton is None:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and interpreting()


if triton is not None:

    @triton.jit
    def _rounded(x, dtype: tl.constexpr):
        """fp32 ``x`` rounded to nearest-even in ``dtype``. bf16 is rounded on the bits, as
        torch does (the interpreter's own bf16 cast truncates); a NaN becomes torch's 0x7FC0."""
        if dtype == tl.bfloat16:
            bits = x.to(tl.uint32, bitcast=True)
            up = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
            out = tl.where(x != x, 0x7FC0, up)
            return out.to(tl.uint16).to(tl.bfloat16, bitcast=True)
        else:
            return x.to(dtype)

    @triton.jit
    def _lion_kernel(
        param_ptr,
        grad_ptr,
        exp_avg_ptr,
        comp_ptr,
        hp_ptr,
        count_ptr,
        n,
        HAS_COMP: tl.constexpr,
        COUNT: tl.constexpr,
        BLOCK_SIZE: tl.constexpr,
    ):
        start = tl.program_id(0).to(tl.int64) * BLOCK_SIZE
        offsets = start + tl.arange(0, BLOCK_SIZE)
        inside = offsets < n
        decay = tl.load(hp_ptr)
        neg_lr = tl.load(hp_ptr + 1)
        beta1 = tl.load(hp_ptr + 2)
        one_minus_beta1 = tl.load(hp_ptr + 3)
        beta2 = tl.load(hp_ptr + 4)
        one_minus_beta2 = tl.load(hp_ptr + 5)
        grad_sign = tl.load(hp_ptr + 6)
        g = tl.load(grad_ptr + offsets, mask=inside, other=0.0).to(tl.float32) * grad_sign
        m = tl.load(exp_avg_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
        p = tl.load(param_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
        ok = tl.abs(g) < float("inf")  # false for NaN and ±inf
        # m·β1 rounded, then one fused multiply-add, as torch's add(alpha=) computes it
        c = tl.fma(g, one_minus_beta1, m * beta1)
        sign = tl.where(c > 0, 1.0, tl.where(c < 0, -1.0, 0.0))  # sign(0) = 0
        new = tl.where(ok, p * decay + sign * neg_lr, p)
        if HAS_COMP:
            exact = new + tl.load(comp_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
            rounded = _rounded(exact, param_ptr.dtype.element_ty)
            tl.store(param_ptr + offsets, rounded, mask=inside)
            error = exact - rounded.to(tl.float32)
            tl.store(comp_ptr + offsets, _rounded(error, comp_ptr.dtype.element_ty), mask=inside)
        else:
            tl.store(param_ptr + offsets, _rounded(new, param_ptr.dtype.element_ty), mask=inside)
        new_m = tl.where(ok, tl.fma(g, one_minus_beta2, m * beta2), m)
        tl.store(exp_avg_ptr + offsets, _rounded(new_m, exp_avg_ptr.dtype.element_ty), mask=inside)
        if COUNT:
            # one atomic add per skipped coordinate (rare), none for the others
            skipped = inside & (ok == 0)
            tl.atomic_add(count_ptr + offsets * 0, tl.full(offsets.shape, 1, tl.int64), skipped)


def lion_flat(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    hp: Tensor,
    nonfinite: Tensor | None,
    comp: Tensor | None = None,
    *,
    block: int = BLOCK,
) -> None:
    """One Lion step in place over contiguous tensors of one size, in one launch.

    Same arguments as the compiled kernel: ``hp`` from
    :func:`optim.kernels.hyperparameter_tensor`, ``nonfinite`` an int64 scalar that counts
    the skipped coordinates (None: skipped uncounted), ``comp`` the Kahan buffer or None.
    ``block`` (a power of two) sets the elements per program.
    """
    if triton is None:
        raise RuntimeError("the Triton Lion kernel needs the triton package")
    n = param.numel()
    for name, t in (("grad", grad), ("exp_avg", exp_avg), ("comp", comp)):
        if t is not None and (t.numel() != n or not t.is_contiguous()):
            raise ValueError(f"{name} must be contiguous with {n} elements like the parameter")
    if not param.is_contiguous():
        raise ValueError("the parameter must be contiguous")
    if n == 0:
        return
    grid = (triton.cdiv(n, block),)
    _lion_kernel[grid](
        param,
        grad,
        exp_avg,
        comp if comp is not None else param,  # unread without HAS_COMP
        hp,
        nonfinite if nonfinite is not None else hp,  # unwritten without COUNT
        n,
        HAS_COMP=comp is not None,
        COUNT=nonfinite is not None,
        BLOCK_SIZE=block,
        # No contraction into fused multiply-adds beyond the two the kernel asks for, so a
        # GPU rounds as the reference step does.
        enable_fp_fusion=False,
    )
