"""The Lion optimizer (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms").

Update with decoupled weight decay, per parameter::

    u = sign(β1·m + (1−β1)·g)
    θ ← θ·(1−η·λ) − η·u
    m ← β2·m + (1−β2)·g
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from optim import dispatch, kernels
from optim.compiled import readiness
from optim.flat import FlatBucket

__all__ = ["Lion"]

IMPLS = ("auto", "reference", "foreach", "fused")
MOMENTUM_DTYPES = (None, torch.float32, torch.bfloat16, torch.float16)
NONFINITE = ("skip", "mask", "raise")
LOW_PRECISION = (torch.bfloat16, torch.float16)


def _check_lr(lr: Any) -> None:
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("lr as a Tensor must have exactly one element")
    if not (math.isfinite(float(lr)) and float(lr) >= 0.0):
        raise ValueError(f"Invalid lr: {lr!r} (must be a finite number >= 0)")


def _check_betas(betas: Any) -> None:
    try:
        beta1, beta2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid betas: {betas!r} (must be a pair of numbers)") from None
    for i, beta in enumerate((beta1, beta2)):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid betas[{i}]: {beta!r} (must be in [0, 1))")


def _check_weight_decay(weight_decay: Any) -> None:
    if not (math.isfinite(float(weight_decay)) and float(weight_decay) >= 0.0):
        raise ValueError(f"Invalid weight_decay: {weight_decay!r} (must be a finite number >= 0)")


class Lion(Optimizer):
    """Lion with decoupled weight decay and reference, foreach or fused steps.

    Args:
        params: parameters or param groups (each group may set lr, betas,
            weight_decay, maximize).
        lr: learning rate η.
        betas: (β1, β2): β1 interpolates the update direction, β2 the momentum.
        weight_decay: decoupled weight decay λ (θ is multiplied by 1 − η·λ).
        impl: ``"reference"`` (per tensor), ``"foreach"``, ``"fused"`` or
            ``"auto"`` (fused where it can run, else foreach). Fused steps every
            contiguous fp32 CPU tensor with one native call for the whole list
            (:mod:`optim.native`, built in under a second on first use) and every
            other contiguous tensor with a compiled elementwise kernel per tensor
            (with ``"auto"``, tensors under 4,096 elements take foreach instead);
            while that kernel compiles in the background — 10–15 s on a CPU with
            an empty cache — ``"auto"`` steps with foreach, where ``"fused"``
            waits for it. The full rules: :func:`optim.dispatch.plan`.
        flatten: with ``"fused"`` or ``"auto"``, move each group's parameters,
            gradients and momenta into flat buffers (one kernel per buffer) and
            re-point every ``param.data`` at its slice. Fastest in a loop that
            zeroes gradients in place, but every parameter then shares one
            storage (``torch.save`` of one parameter writes them all; storage-
            based tied-weight detection sees them as tied): opt in only where
            you own the training loop. Off by default.
        momentum_dtype: dtype of the momentum state; ``None`` uses the
            parameter's dtype. Arithmetic is always fp32.
        maximize: maximize the objective instead of minimizing it.
        kahan_sum: for bf16/fp16 parameters, keep each update's rounding error
            (state ``kahan_comp``, 2 bytes per parameter) and add it to the next
            update, so updates smaller than the parameter's resolution (Lion's
            step is exactly lr per element) still accumulate. Off by default.
        nonfinite: a coordinate whose gradient is NaN or infinite keeps its
            parameter and momentum for that step and is counted in
            :attr:`nonfinite_grads` (``"skip"``, the default); ``"raise"`` also
            raises ``FloatingPointError`` after such a step; ``"mask"`` skips
            without counting.
            In every mode no NaN reaches the momentum, where it would silently
            freeze the weight.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        impl: str = "auto",
        momentum_dtype: torch.dtype | None = None,
        maximize: bool = False,
        kahan_sum: bool = False,
        nonfinite: str = "skip",
        flatten: bool = False,
    ):
        _check_lr(lr)
        _check_betas(betas)
        _check_weight_decay(weight_decay)
        if impl not in IMPLS:
            raise ValueError(f"Invalid impl: {impl!r} (must be one of {', '.join(IMPLS)})")
        if momentum_dtype not in MOMENTUM_DTYPES:
            raise ValueError(
                f"Invalid momentum_dtype: {momentum_dtype!r} "
                "(must be None, torch.float32, torch.bfloat16 or torch.float16)"
            )
        if nonfinite not in NONFINITE:
            raise ValueError(
                f"Invalid nonfinite: {nonfinite!r} (must be 'skip', 'mask' or 'raise')"
            )
        if not isinstance(kahan_sum, bool):
            raise ValueError(f"Invalid kahan_sum: {kahan_sum!r} (must be True or False)")
        if not isinstance(flatten, bool):
            raise ValueError(f"Invalid flatten: {flatten!r} (must be True or False)")
        if flatten and impl not in ("auto", "fused"):
            raise ValueError(f"Invalid flatten: True needs impl 'fused' or 'auto', not {impl!r}")
        self.flatten = flatten
        self.impl = impl
        self.momentum_dtype = momentum_dtype
        self.kahan_sum = kahan_sum
        self.nonfinite = nonfinite
        self._nonfinite_counts: dict[torch.device, Tensor] = {}
        self._flat: dict[int, tuple[dict, list[FlatBucket], list[Tensor]]] = {}
        self._steps_run: set[str] = set()
        self._fused_failed = False
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group, validating its hyperparameters like ``__init__`` does."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            _check_lr(group["lr"])
            _check_betas(group["betas"])
            _check_weight_decay(group["weight_decay"])
        except ValueError:
            self.param_groups.pop()
            raise
        for p in group["params"]:
            self._counter(p.device)  # made now: made in the first step, a compiled step recompiles

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["impl"] = self.impl
        state["momentum_dtype"] = self.momentum_dtype
        state["kahan_sum"] = self.kahan_sum
        state["nonfinite"] = self.nonfinite
        state["flatten"] = self.flatten
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("impl", "auto")
        self.__dict__.setdefault("momentum_dtype", None)
        self.__dict__.setdefault("_fused_failed", False)
        self.__dict__.setdefault("kahan_sum", False)
        self.__dict__.setdefault("nonfinite", "skip")
        self.__dict__.setdefault("flatten", self.impl in ("auto", "fused"))
        self._nonfinite_counts = {}
        self._flat = {}
        self._steps_run = set()
        for group in self.param_groups:
            group.setdefault("maximize", False)

    def _momentum_dtype(self, param: Tensor) -> torch.dtype:
        return self.momentum_dtype or param.dtype

    def _compensated(self, param: Tensor) -> bool:
        return self.kahan_sum and param.dtype in LOW_PRECISION

    @property
    def steps_used(self) -> tuple[str, ...]:
        """Which steps served the last :meth:`step` (of ``"native"``, ``"triton"``,
        ``"compiled"``, ``"foreach"``, ``"reference"``; empty inside a compiled step)."""
        return tuple(step for step in dispatch.STEPS if step in self._steps_run)

    @property
    def nonfinite_grads(self) -> int:
        """How many gradient values were NaN or infinite (and skipped) so far."""
        return int(sum(int(c.item()) for c in self._nonfinite_counts.values()))

    def _counter(self, device: torch.device) -> Tensor | None:
        if self.nonfinite == "mask":
            return None
        counter = self._nonfinite_counts.get(device)
        if counter is None:
            counter = torch.zeros((), dtype=torch.int64, device=device)
            self._nonfinite_counts[device] = counter
        return counter

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by any Lion impl; momentum keeps this optimizer's dtype."""
        saved_ids = list(chain.from_iterable(g["params"] for g in state_dict["param_groups"]))
        super().load_state_dict(state_dict)
        params = chain.from_iterable(g["params"] for g in self.param_groups)
        for saved_id, param in zip(saved_ids, params, strict=True):
            saved = state_dict["state"].get(saved_id)
            if saved is not None and "exp_avg" in saved:
                # Copy from the saved tensor itself (not torch's cast to the
                # param dtype) so no precision is lost and nothing is aliased.
                self.state[param]["exp_avg"] = saved["exp_avg"].to(
                    device=param.device, dtype=self._momentum_dtype(param), copy=True
                )
        self._flat.clear()

    def _init_group(
        self,
        group: dict[str, Any],
        params_with_grad: list[Tensor],
        grads: list[Tensor],
        exp_avgs: list[Tensor],
        comps: list[Tensor | None],
    ) -> bool:
        """Fill the lists with the group's params that have grads, their grads, momenta and
        Kahan buffers (None where not compensated).

        Same protocol as torch's optimizers (dynamo traces a step through it).
        """
        return self._gather(group["params"], params_with_grad, grads, exp_avgs, comps)

    def _gather(
        self,
        params: Iterable[Tensor],
        params_with_grad: list[Tensor],
        grads: list[Tensor],
        exp_avgs: list[Tensor],
        comps: list[Tensor | None],
    ) -> bool:
        for p in params:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("Lion does not support sparse gradients")
            state = self.state[p]
            if "exp_avg" not in state:
                state["exp_avg"] = torch.zeros_like(
                    p, dtype=self._momentum_dtype(p), memory_format=torch.preserve_format
                )
            elif state["exp_avg"].device != p.device:  # the model moved after a step
                state["exp_avg"] = state["exp_avg"].to(p.device)
            comp = None
            if self._compensated(p):
                if "kahan_comp" not in state:
                    state["kahan_comp"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                elif state["kahan_comp"].device != p.device:
                    state["kahan_comp"] = state["kahan_comp"].to(p.device)
                comp = state["kahan_comp"]
            params_with_grad.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            comps.append(comp)
        return bool(params_with_grad)

    def _lists(
        self, params: Iterable[Tensor]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor | None]]:
        lists: tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor | None]] = (
            [],
            [],
            [],
            [],
        )
        self._gather(params, *lists)
        return lists

    def _init_flat_group(
        self, group: dict[str, Any], impl: str
    ) -> tuple[list[FlatBucket], list[Tensor]]:
        """Return the group's flat buckets (building them when needed) and leftover params."""
        entry = self._flat.get(id(group))
        if entry is not None and entry[0] is group and all(b.is_current() for b in entry[1]):
            return entry[1], entry[2]
        members = group["params"]
        trainable = [i for i, p in enumerate(members) if p.requires_grad]
        parts = dispatch.plan([members[i] for i in trainable], impl=impl)
        fusable = {trainable[j] for j in parts.get("fused", ())}
        by_key: dict[tuple, list[Tensor]] = {}
        leftover = []
        for i, p in enumerate(members):
            if i in fusable:
                by_key.setdefault((p.device, p.dtype), []).append(p)
            else:
                leftover.append(p)
        buckets = []
        for params in by_key.values():
            bucket = FlatBucket(
                params, self._momentum_dtype(params[0]), compensated=self._compensated(params[0])
            )
            for p, view in zip(params, bucket.exp_avg_views, strict=True):
                state = self.state[p]
                if "exp_avg" in state:
                    view.copy_(state["exp_avg"])
                state["exp_avg"] = view
            for p, view in zip(params, bucket.comp_views, strict=False):  # none: uncompensated
                state = self.state[p]
                if "kahan_comp" in state:
                    view.copy_(state["kahan_comp"])
                state["kahan_comp"] = view
            buckets.append(bucket)
        self._flat[id(group)] = (group, buckets, leftover)
        return buckets, leftover

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one optimization step; ``closure`` re-evaluates the loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        before = self.nonfinite_grads if self.nonfinite == "raise" else 0
        if not torch.compiler.is_compiling():
            self._steps_run.clear()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr = group["lr"]
            hyper = {
                # A tensor lr stays a tensor: float() would read it back (a graph break
                # inside a compiled step, a device sync on CUDA).
                "lr": lr if isinstance(lr, Tensor) else float(lr),
                "beta1": float(beta1),
                "beta2": float(beta2),
                "weight_decay": float(group["weight_decay"]),
                "maximize": bool(group["maximize"]),
            }
            impl = dispatch.effective_impl(
                self.impl,
                tracing=torch.compiler.is_compiling(),
                fused_failed=self._fused_failed,
            )
            if self.flatten and impl in dispatch.FUSED_IMPLS:
                self._flat_step(group, impl, hyper)
            else:
                self._planned_step(group, impl, hyper)
        if self.nonfinite == "raise":
            skipped = self.nonfinite_grads - before
            if skipped:
                raise FloatingPointError(
                    f"Lion: {skipped} gradient values were NaN or infinite; their coordinates "
                    "were left as they were (nonfinite='raise'; 'skip' carries on)"
                )
        return loss

    def _run(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        exp_avgs: list[Tensor],
        comps: list[Tensor | None],
        step: str,
        hyper: dict[str, Any],
    ) -> None:
        """Run one of :func:`optim.dispatch.plan`'s steps on these tensors, one call per device
        (each device counts its own non-finite values)."""
        if not params:
            return
        if not torch.compiler.is_compiling():
            self._steps_run.add(step)
        params, grads, exp_avgs = (
            [dispatch.local(t) for t in lst] for lst in (params, grads, exp_avgs)
        )
        comps = [dispatch.local(c) for c in comps]
        devices = {p.device for p in params}
        if len(devices) == 1:
            counter = self._counter(params[0].device)
            kernels.lion(
                params, grads, exp_avgs, comps=comps, nonfinite=counter, impl=step, **hyper
            )
            return
        for device in devices:
            idx = [i for i, p in enumerate(params) if p.device == device]
            kernels.lion(
                *([lst[i] for i in idx] for lst in (params, grads, exp_avgs)),
                comps=[comps[i] for i in idx],
                nonfinite=self._counter(device),
                impl=step,
                **hyper,
            )

    def _kernel_ready(self, param: Tensor, momentum: Tensor, compensated: bool) -> bool:
        """Whether the compiled kernel for these dtypes is built (``fused`` waits for it,
        ``auto`` steps with foreach until it is; a failed build turns ``auto`` to foreach)."""
        if self._fused_failed:
            return False
        try:
            count = self.nonfinite != "mask"
            ok = readiness.ready(
                param.device,
                param.dtype,
                momentum.dtype,
                compensated,
                block=self.impl == "fused",
                count=count,
            )
        except Exception as exc:
            raise RuntimeError(f"Lion: the fused kernel did not compile: {exc}") from exc
        key = (param.device.type, param.dtype, momentum.dtype, compensated, count)
        if not ok and key in readiness.errors:
            exc = readiness.errors[key]
            warnings.warn(
                f"Lion: the fused kernel did not compile ({type(exc).__name__}: {exc}); "
                "using the foreach step from now on",
                RuntimeWarning,
                stacklevel=5,
            )
            self._fused_failed = True
        return ok

    def _planned_step(self, group: dict[str, Any], impl: str, hyper: dict[str, Any]) -> None:
        """Step each of the group's parameters that have grads in place with the step
        :func:`optim.dispatch.plan` picks for it."""
        params, grads, exp_avgs, comps = [], [], [], []
        self._init_group(group, params, grads, exp_avgs, comps)
        lists = (params, grads, exp_avgs, comps)
        for step, picked in dispatch.plan(*lists, impl=impl, ready=self._kernel_ready).items():
            if len(picked) == len(params):
                self._run(*lists, step, hyper)
            else:
                self._run(*([lst[i] for i in picked] for lst in lists), step, hyper)

    def _flat_step(self, group: dict[str, Any], impl: str, hyper: dict[str, Any]) -> None:
        """Step the group's flat buckets, each with the step :func:`optim.dispatch.plan` picks
        for its buffers, and its other params with foreach."""
        buckets, leftover = self._init_flat_group(group, impl)
        for bucket in buckets:
            lists = ([bucket.param], [bucket.grad], [bucket.exp_avg], [bucket.comp])
            (step,) = dispatch.plan(*lists, impl=impl, flat=True, ready=self._kernel_ready)
            if step != "foreach" and bucket.sync_grads():
                try:
                    self._steps_run.add(step)
                    kernels.lion(
                        *lists[:3],
                        comps=lists[3],
                        nonfinite=self._counter(bucket.param.device),
                        impl=step,
                        **hyper,
                    )
                    continue
                except Exception as exc:
                    if self.impl == "fused":
                        raise
                    warnings.warn(
                        f"Lion: the fused step failed ({type(exc).__name__}: {exc}); "
                        "using the foreach step from now on",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    self._fused_failed = True
            # Some grads are None (those params are skipped, as in the
            # reference step) or no fused step is ready.
            self._run(*self._lists(bucket.params), "foreach", hyper)
        if leftover:
            self._run(*self._lists(leftover), "foreach", hyper)
