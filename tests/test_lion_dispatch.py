"""optim.dispatch.plan: which step serves each tensor, asked directly on tensors of each kind
(no kernel runs; whether the native library loads and whether a compiled kernel is built are
given as callables), and the same answer whether Lion or optim.kernels.lion asks."""

from __future__ import annotations

import pytest
import torch

from optim import Lion, dispatch, kernels, native
from optim.dispatch import MIN_FUSED_NUMEL, effective_impl, plan

BIG = MIN_FUSED_NUMEL
LIB = object()  # stands for a loaded native library


def triple(n=BIG, dtype=torch.float32, momentum=None, grad_dtype=None):
    """A parameter, its gradient and its momentum of ``n`` elements."""
    p = torch.zeros(n, dtype=dtype)
    g = torch.zeros(n, dtype=grad_dtype or dtype)
    m = torch.zeros(n, dtype=momentum or dtype)
    return p, g, m


def ask(*triples, impl="auto", comps=None, native_library=lambda: LIB, ready=None, **kw):
    """plan over these (param, grad, momentum) triples; ``ready`` None means every kernel is
    built (a list records what was asked)."""
    asked = []

    def is_ready(param, exp_avg, compensated):
        asked.append((param.dtype, exp_avg.dtype, compensated))
        return True if ready is None else ready

    params, grads, moms = (list(t) for t in zip(*triples, strict=True)) if triples else ([],) * 3
    parts = plan(
        params,
        grads,
        moms,
        comps,
        impl=impl,
        native_library=native_library,
        ready=is_ready,
        **kw,
    )
    return parts, asked


# ---- reference and foreach ----------------------------------------------------------------


@pytest.mark.parametrize("impl", ["reference", "foreach"])
def test_reference_and_foreach_take_every_tensor_whatever_it_is(impl):
    kinds = [
        triple(),
        triple(3, torch.bfloat16),
        triple(BIG, torch.float16),
        triple(5, torch.float64),
        triple(5, torch.complex64),
    ]
    parts, asked = ask(*kinds, impl=impl)
    assert parts == {impl: [0, 1, 2, 3, 4]}
    assert asked == []


@pytest.mark.parametrize("impl", ["auto", "fused", "reference", "foreach"])
def test_no_tensors_no_steps(impl):
    assert ask(impl=impl)[0] == {}


def test_an_unknown_impl_is_refused():
    with pytest.raises(ValueError, match="impl"):
        ask(triple(), impl="triton")


# ---- the native step ----------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["auto", "fused"])
@pytest.mark.parametrize("n", [1, 7, BIG - 1, BIG, 300_000])
def test_contiguous_fp32_cpu_tensors_of_any_size_take_the_native_step(impl, n):
    parts, asked = ask(triple(n), impl=impl)
    assert parts == {"native": [0]}
    assert asked == []  # no compiled kernel is wanted (none builds in the background)


@pytest.mark.parametrize("impl", ["auto", "fused"])
def test_without_the_native_library_fp32_takes_the_compiled_kernel(impl):
    parts, asked = ask(triple(BIG), triple(BIG), impl=impl, native_library=lambda: None)
    assert parts == {"compiled": [0, 1]}
    assert asked == [(torch.float32, torch.float32, False)] * 2


def test_the_native_library_is_asked_once_and_only_when_a_tensor_could_use_it():
    calls = []

    def library():
        calls.append(1)
        return LIB

    ask(triple(BIG, torch.bfloat16), triple(BIG, torch.float16), native_library=library)
    assert calls == []  # a model without fp32 CPU tensors never builds it
    parts, _ = ask(triple(), triple(9), triple(BIG, torch.bfloat16), native_library=library)
    assert calls == [1]
    assert parts == {"native": [0, 1], "compiled": [2]}


@pytest.mark.parametrize(
    ("case", "kw"),
    [
        ("a Kahan buffer", {"comps": [torch.zeros(BIG)]}),
        ("bf16 momentum", {}),
    ],
)
def test_fp32_with_a_kahan_buffer_or_other_momentum_takes_the_compiled_kernel(case, kw):
    momentum = torch.bfloat16 if case == "bf16 momentum" else None
    parts, asked = ask(triple(BIG, momentum=momentum), **kw)
    assert parts == {"compiled": [0]}, case
    assert asked == [(torch.float32, momentum or torch.float32, "comps" in kw)]


def test_fp32_tensors_the_native_step_refuses_take_the_compiled_kernel_when_ready():
    """A tensor subclass or an inference tensor is not stepped through raw pointers; a
    kernel that is not built yet leaves it to foreach."""

    class Sub(torch.Tensor):
        pass

    p, g, m = triple()
    with torch.inference_mode():
        inference = torch.zeros(BIG)
    odd = [(p.as_subclass(Sub), g, m), (inference, g, m), (p, torch._neg_view(g), m)]
    assert ask(*odd)[0] == {"compiled": [0, 1, 2]}
    assert ask(*odd, ready=False)[0] == {"foreach": [0, 1, 2]}


# ---- the compiled kernel ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_tensors_take_the_compiled_kernel_once_built_and_big_enough(dtype):
    small, big = triple(BIG - 1, dtype), triple(BIG, dtype)
    parts, asked = ask(small, big, impl="auto")
    assert parts == {"compiled": [1], "foreach": [0]}
    assert asked == [(dtype, dtype, False)]  # the small one is not asked about
    # not built yet: auto steps with foreach meanwhile
    assert ask(small, big, impl="auto", ready=False)[0] == {"foreach": [0, 1]}
    # an explicit "fused" runs the kernel on every tensor of 2+ elements
    assert ask(triple(1, dtype), triple(2, dtype), impl="fused")[0] == {
        "compiled": [1],
        "foreach": [0],
    }


def test_flat_buffers_take_the_compiled_kernel_whatever_their_size():
    parts, _ = ask(triple(16, torch.bfloat16), impl="auto", flat=True)
    assert parts == {"compiled": [0]}


@pytest.mark.parametrize("impl", ["auto", "fused"])
def test_strided_tensors_and_grads_in_another_dtype_take_foreach(impl):
    p, g, m = triple(2 * BIG)
    transposed = (p.view(2, -1).t(), g.view(2, -1).t(), m.view(2, -1).t())
    other_grad = triple(BIG, grad_dtype=torch.bfloat16)
    bf16_strided = tuple(t[::2] for t in triple(2 * BIG, torch.bfloat16))
    parts, asked = ask(transposed, other_grad, bf16_strided, impl=impl)
    assert parts == {"foreach": [0, 1, 2]}
    assert asked == []


def test_ready_is_asked_in_order_and_its_answer_kept_per_tensor():
    answers = iter([True, False, True])
    tensors = [triple(BIG, torch.bfloat16) for _ in range(3)]
    parts = plan(
        *(list(t) for t in zip(*tensors, strict=True)),
        impl="fused",
        native_library=lambda: LIB,
        ready=lambda *a: next(answers),
    )
    assert parts == {"compiled": [0, 2], "foreach": [1]}


def test_without_ready_the_kernel_counts_as_built():
    p, g, m = triple(BIG, torch.bfloat16)
    assert plan([p], [g], [m], impl="fused") == {"compiled": [0]}


# ---- what the fused steps cannot serve ----------------------------------------------------


UNSUPPORTED = {
    "fp64": lambda: triple(BIG, torch.float64),
    "complex64": lambda: triple(BIG, torch.complex64),
    "int32": lambda: triple(BIG, torch.int32),
    "sparse": lambda: (torch.zeros(BIG).to_sparse(), torch.zeros(BIG), torch.zeros(BIG)),
    "meta": lambda: tuple(torch.zeros(BIG, device="meta") for _ in range(3)),
}


@pytest.mark.parametrize("kind", UNSUPPORTED)
def test_auto_gives_what_the_fused_steps_cannot_serve_to_foreach(kind):
    parts, asked = ask(triple(), UNSUPPORTED[kind](), triple(BIG, torch.bfloat16), impl="auto")
    assert parts == {"native": [0], "compiled": [2], "foreach": [1]}
    assert asked == [(torch.bfloat16, torch.bfloat16, False)]


@pytest.mark.parametrize("kind", UNSUPPORTED)
def test_fused_refuses_what_the_fused_steps_cannot_serve(kind):
    with pytest.raises(RuntimeError, match="impl='fused' does not support"):
        ask(triple(), UNSUPPORTED[kind](), impl="fused")


def test_fused_supported_by_layout_dtype_and_device():
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        assert dispatch.fused_supported(torch.zeros(3, dtype=dtype))
    for make in UNSUPPORTED.values():
        assert not dispatch.fused_supported(make()[0])


# ---- parameters alone (building flat buffers) ---------------------------------------------


def test_parameters_alone_split_into_what_a_fused_step_may_serve_and_the_rest():
    params = [
        torch.zeros(3),
        torch.zeros(3, dtype=torch.float64),
        torch.zeros(3, dtype=torch.bfloat16),
        torch.zeros(3, dtype=torch.complex64),
        torch.zeros(BIG, dtype=torch.float16),
    ]
    assert plan(params, impl="auto") == {"fused": [0, 2, 4], "foreach": [1, 3]}
    assert plan(params, impl="foreach") == {"foreach": [0, 1, 2, 3, 4]}
    assert plan(params, impl="reference") == {"reference": [0, 1, 2, 3, 4]}
    with pytest.raises(RuntimeError, match="float64"):
        plan(params, impl="fused")
    assert plan(params[::2], impl="fused") == {"fused": [0, 1, 2]}


# ---- the impl a step runs with ------------------------------------------------------------


@pytest.mark.parametrize(
    ("impl", "tracing", "failed", "expected"),
    [
        ("auto", False, False, "auto"),
        ("fused", False, False, "fused"),
        ("foreach", False, False, "foreach"),
        ("reference", False, False, "reference"),
        ("auto", True, False, "foreach"),  # a compiled training step traces foreach
        ("fused", True, False, "foreach"),
        ("reference", True, False, "reference"),
        ("foreach", True, True, "foreach"),
        ("auto", False, True, "foreach"),  # a failed build turns auto to foreach for good
        ("fused", False, True, "fused"),  # fused keeps asking (and raising)
    ],
)
def test_effective_impl(impl, tracing, failed, expected):
    assert effective_impl(impl, tracing=tracing, fused_failed=failed) == expected


# ---- every path asks the same plan --------------------------------------------------------


def test_kernels_lion_fused_refuses_what_lion_fused_refuses():
    p = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    p.grad = torch.ones(5, dtype=torch.float64)
    hyper = {"lr": 0.1, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0, "maximize": False}
    with pytest.raises(RuntimeError, match="impl='fused' does not support"):
        Lion([p], impl="fused").step()
    with pytest.raises(RuntimeError, match="impl='fused' does not support"):
        kernels.lion([p.detach()], [p.grad], [torch.zeros_like(p)], impl="fused", **hyper)
    with pytest.raises(RuntimeError, match="impl='fused' does not support"):
        Lion([p], impl="fused", flatten=True).step()


def test_kernels_lion_fused_steps_what_the_plan_leaves_to_foreach(monkeypatch):
    """A strided fp32 tensor next to a contiguous one: native for one, foreach for the other,
    and the numbers of the reference step."""
    assert native.library() is not None, native.error  # the machine has a C compiler
    calls = []
    real_step = native.step
    monkeypatch.setattr(native, "step", lambda *a: calls.append(len(a[1])) or real_step(*a))
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(64, 3, generator=gen), torch.randn(3, 64, generator=gen).t()]
    grads = [torch.randn(p.shape, generator=gen) for p in params]
    hyper = {"lr": 0.1, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1, "maximize": False}
    ref = [p.clone() for p in params]
    kernels.lion(ref, grads, [torch.zeros_like(p) for p in params], impl="reference", **hyper)
    kernels.lion(params, grads, [torch.zeros_like(p) for p in params], impl="fused", **hyper)
    assert calls == [1]
    for p, r in zip(params, ref, strict=True):
        torch.testing.assert_close(p, r, rtol=0, atol=1e-6)


def test_lion_steps_each_tensor_as_planned(monkeypatch):
    """Lion(impl="auto") on a mixed group: the fp32 tensors in one native call, the float64
    one with foreach; no compiled kernel is asked for."""
    asked = []
    monkeypatch.setattr(kernels.readiness, "ready", lambda *a, **k: asked.append(a) or False)
    calls = []
    real_step = native.step
    monkeypatch.setattr(native, "step", lambda *a: calls.append(len(a[1])) or real_step(*a))
    params = [
        torch.nn.Parameter(torch.ones(10)),
        torch.nn.Parameter(torch.ones(10, dtype=torch.float64)),
        torch.nn.Parameter(torch.ones(BIG)),
    ]
    for p in params:
        p.grad = torch.ones_like(p)
    Lion(params, lr=0.25, impl="auto").step()
    assert calls == [2]
    assert asked == []
    for p in params:
        assert p.detach().unique().tolist() == [0.75]
