"""The Lion step: reference (per tensor), foreach and fused (flat buffer, compiled).

All three step functions share one signature: parallel lists of params, grads
and momenta (``exp_avgs``) positionally, hyperparameters keyword-only. For the
fused path the lists hold whole contiguous tensors or one flat buffer per
device/dtype bucket (see :class:`FlatBucket`); fp32 CPU tensors are stepped by
one native call for the whole list (:mod:`optim.native`), every other tensor by
one compiled elementwise kernel call whose hyperparameters arrive as a tensor,
so changing them never recompiles.
"""

from __future__ import annotations

import functools
import logging
import operator
import os
import subprocess
import sys
import tempfile
import threading
import types
from collections import defaultdict

import torch
from torch import Tensor

from optim import native

log = logging.getLogger(__name__)

__all__ = [
    "FlatBucket",
    "fused_supported",
    "hyperparameter_tensor",
    "lion",
]

# Flat-buffer offsets are multiples of this many elements (64 bytes of fp32),
# so every view starts on a vector/cache-line boundary.
_ALIGN = 16
# The foreach step works on chunks of about this many elements at a time.
_FOREACH_CHUNK = 1 << 20


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
        code = f"from optim.kernels import _save_kernel; _save_kernel(*{args!r})"
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
                fn = torch.compiler.load_compiled_function(f, f_globals=globals())
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
