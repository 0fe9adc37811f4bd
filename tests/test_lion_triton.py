"""The Triton Lion kernel, run by Triton's interpreter on CPU tensors (``TRITON_INTERPRET=1``):
bit for bit the reference step's result, whatever the size, dtypes, options and gradients.

Small sizes and a small block keep the interpreter (slow) under a few seconds; the block
boundaries are what the sizes probe.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

from optim import kernels  # noqa: E402

BLOCK = 64
SIZES = [1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 7, 257]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(scope="module")
def triton_lion():
    """``optim.triton_lion`` as Triton's interpreter runs it (restored afterwards)."""
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    import optim.triton_lion as module

    yield importlib.reload(module)
    if before is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = before
    importlib.reload(module)


def hyper(lr=1e-2, beta1=0.9, beta2=0.99, weight_decay=0.1, maximize=False):
    return {
        "lr": lr,
        "beta1": beta1,
        "beta2": beta2,
        "weight_decay": weight_decay,
        "maximize": maximize,
    }


def state(n, dtype, momentum_dtype, kahan, seed=0):
    """A parameter, momentum, Kahan buffer (or None), and ``steps`` gradients with NaN,
    ±inf and exact zeros planted."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(n, generator=gen).to(dtype)
    m = (torch.randn(n, generator=gen) * 0.1).to(momentum_dtype)
    comp = (torch.randn(n, generator=gen) * 1e-3).to(dtype) if kahan else None
    return p, m, comp


def grads(n, dtype, steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for step in range(steps):
        g = torch.randn(n, generator=gen).to(dtype)
        if n > 3:
            g[(step * 5) % n] = float("nan")
            g[(step * 5 + 1) % n] = float("inf")
            g[(step * 5 + 2) % n] = -float("inf")
        out.append(g)
    return out


def run_both(triton_lion, n, dtype, momentum_dtype, kahan, steps, count, **options):
    """(triton's, reference's) parameter, momentum, Kahan buffer and count after ``steps``."""
    results = []
    for impl in ("triton", "reference"):
        p, m, comp = state(n, dtype, momentum_dtype, kahan)
        counter = torch.zeros((), dtype=torch.int64)
        for g in grads(n, dtype, steps):
            if impl == "triton":
                hp = kernels.hyperparameter_tensor(device="cpu", **options)
                triton_lion.lion_flat(p, g, m, hp, counter if count else None, comp, block=BLOCK)
            else:
                kernels.lion(
                    [p], [g], [m], comps=[comp], nonfinite=counter, impl="reference", **options
                )
        results.append((p, m, comp, int(counter)))
    return results


def assert_same(got, want):
    for a, b in zip(got[:3], want[:3], strict=True):
        if a is None:
            assert b is None
            continue
        assert a.dtype == b.dtype
        assert torch.equal(a.view(torch.uint8), b.view(torch.uint8)), (a - b).abs().max()


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_each_size_and_dtype_matches_the_reference_bit_for_bit(triton_lion, n, dtype):
    got, want = run_both(triton_lion, n, dtype, dtype, False, steps=3, count=True, **hyper())
    assert_same(got, want)
    assert got[3] == want[3] == (9 if n > 3 else 0)  # 3 non-finite values a step, skipped


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("momentum_dtype", [None, torch.float32])
@pytest.mark.parametrize("kahan", [False, True])
def test_low_precision_parameters_momentum_dtype_and_kahan(
    triton_lion, dtype, momentum_dtype, kahan
):
    m_dtype = momentum_dtype or dtype
    got, want = run_both(
        triton_lion, 3 * BLOCK + 7, dtype, m_dtype, kahan, steps=4, count=True, **hyper(lr=3e-4)
    )
    assert_same(got, want)
    if kahan:  # the compensation is doing something: tiny updates are not all rounded away
        assert got[2].abs().max() > 0


@pytest.mark.parametrize(
    "options",
    [
        hyper(maximize=True),
        hyper(weight_decay=0.0),
        hyper(beta1=0.95, beta2=0.98),
        hyper(lr=torch.tensor(3e-3)),
        hyper(lr=torch.tensor(3e-3, dtype=torch.float64), weight_decay=0.5),
    ],
    ids=["maximize", "no-decay", "lm-betas", "tensor-lr", "tensor-lr-f64"],
)
def test_options_match_the_reference(triton_lion, options):
    got, want = run_both(
        triton_lion, BLOCK + 1, torch.float32, torch.float32, False, steps=3, count=True, **options
    )
    assert_same(got, want)


def test_without_a_counter_non_finite_values_are_still_skipped(triton_lion):
    got, want = run_both(
        triton_lion, BLOCK + 1, torch.float32, torch.float32, False, steps=2, count=False, **hyper()
    )
    assert_same(got, want)
    assert got[3] == 0 and want[3] == 6


def test_sign_of_zero_is_zero_and_the_parameter_only_decays(triton_lion):
    n = BLOCK + 3
    p = torch.full((n,), 2.0)
    m = torch.zeros(n)
    g = torch.zeros(n)
    hp = kernels.hyperparameter_tensor(device="cpu", **hyper(lr=0.5, weight_decay=0.1))
    triton_lion.lion_flat(p, g, m, hp, None, block=BLOCK)
    assert torch.equal(p, torch.full((n,), 2.0 * (1 - 0.05)))
    assert torch.equal(m, torch.zeros(n))


def test_a_flat_bucket_of_many_tensors_of_mixed_sizes_steps_in_one_launch(triton_lion):
    shapes = [(1,), (7, 3), (BLOCK,), (BLOCK + 1,), (5, 13), (2, 2, 2)]
    gen = torch.Generator().manual_seed(3)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    plain = [p.detach().clone() for p in params]
    bucket = kernels.FlatBucket(params, torch.float32, compensated=False)
    moms = [torch.zeros_like(p) for p in plain]
    counter = torch.zeros((), dtype=torch.int64)
    for _ in range(3):
        gs = [torch.randn(s, generator=gen) for s in shapes]
        gs[1][0, 0] = float("nan")
        for p, g in zip(params, gs, strict=True):
            p.grad = g.clone()
        assert bucket.sync_grads()
        hp = kernels.hyperparameter_tensor(device="cpu", **hyper())
        triton_lion.lion_flat(bucket.param, bucket.grad, bucket.exp_avg, hp, counter, block=BLOCK)
        kernels.lion(plain, gs, moms, impl="reference", **hyper())
    for p, q, view, m in zip(params, plain, bucket.exp_avg_views, moms, strict=True):
        assert torch.equal(p.detach(), q)
        assert torch.equal(view, m)
    assert int(counter) == 3


def test_mismatched_tensors_are_refused(triton_lion):
    hp = kernels.hyperparameter_tensor(device="cpu", **hyper())
    with pytest.raises(ValueError, match="exp_avg must be contiguous with 4 elements"):
        triton_lion.lion_flat(torch.zeros(4), torch.zeros(4), torch.zeros(5), hp, None)
    with pytest.raises(ValueError, match="parameter must be contiguous"):
        p = torch.zeros(4, 4).t()
        triton_lion.lion_flat(p, torch.zeros(16), torch.zeros(16), hp, None)


def test_available_only_on_cuda_or_while_interpreting(triton_lion):
    assert triton_lion.available(torch.device("cpu"))  # the fixture interprets
    assert triton_lion.available(torch.device("meta")) is False


def model(dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(BLOCK + 3,), (7, 5), (2, BLOCK), (1,)]
    return [torch.nn.Parameter(torch.randn(s, generator=gen).to(dtype)) for s in shapes]


def train(params, optimizer, steps=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for p in params:
            g = torch.randn(p.shape, generator=gen).to(p.dtype)
            if step == 1 and p.numel() > 3:
                g.view(-1)[2] = float("nan")
            p.grad = g
        optimizer.step()


@pytest.mark.parametrize("flatten", [False, True])
@pytest.mark.parametrize(
    "dtype, options",
    [
        (torch.bfloat16, {}),
        (torch.bfloat16, {"kahan_sum": True}),
        (torch.float16, {"momentum_dtype": torch.float32}),
        (torch.bfloat16, {"maximize": True, "nonfinite": "mask"}),
    ],
    ids=["bf16", "bf16-kahan", "fp16-fp32-momentum", "maximize-mask"],
)
def test_lion_takes_the_triton_kernel_and_steps_as_the_reference_does(
    triton_lion, monkeypatch, flatten, dtype, options
):
    """``LIONSWEEP_LION_KERNEL=triton``: the fused step of 16-bit CPU tensors (which the native
    call does not serve) goes to the interpreted kernel, and says so."""
    from optim import Lion

    monkeypatch.setenv("LIONSWEEP_LION_KERNEL", "triton")
    ours, truth = model(dtype), model(dtype)
    lr = torch.tensor(3e-3)  # a tensor lr, as a scheduler's
    fused = Lion(ours, lr=lr, weight_decay=0.1, impl="fused", flatten=flatten, **options)
    reference = Lion(truth, lr=lr, weight_decay=0.1, impl="reference", **options)
    train(ours, fused)
    train(truth, reference)
    assert "triton" in fused.steps_used and "compiled" not in fused.steps_used
    assert reference.steps_used == ("reference",)
    for p, q in zip(ours, truth, strict=True):
        assert torch.equal(p.detach(), q.detach())
        for key in ("exp_avg", "kahan_comp"):
            if key in reference.state[q]:
                assert torch.equal(fused.state[p][key], reference.state[q][key])
    if options.get("nonfinite") != "mask":
        assert fused.nonfinite_grads == reference.nonfinite_grads == 3


def test_a_model_the_native_step_cannot_serve_builds_and_compiles_nothing(triton_lion, monkeypatch):
    """As a CUDA-only model on a GPU node: with the Triton kernel serving every tensor, the
    native CPU library is never asked for and no compiled kernel is waited for or built."""
    from optim import dispatch

    monkeypatch.setenv("LIONSWEEP_LION_KERNEL", "triton")
    params = [t.detach() for t in model(torch.bfloat16)]
    grads = [torch.ones_like(p) for p in params]
    moms = [torch.zeros_like(p) for p in params]
    asked = []
    parts = dispatch.plan(
        params,
        grads,
        moms,
        impl="fused",
        native_library=lambda: asked.append("native"),
        ready=lambda *a: asked.append("compiled") or True,
    )
    assert parts == {"triton": [0, 1, 2], "foreach": [3]}  # one element: foreach
    assert asked == []


def test_which_kernel_the_environment_asks_for(triton_lion, monkeypatch):
    from optim import dispatch

    cpu = torch.device("cpu")
    monkeypatch.delenv("LIONSWEEP_LION_KERNEL", raising=False)
    assert dispatch.kernel_for(cpu) == "compiled"  # auto: Triton only on CUDA
    monkeypatch.setenv("LIONSWEEP_LION_KERNEL", "triton")
    assert dispatch.kernel_for(cpu) == "triton"  # interpreted
    monkeypatch.setenv("LIONSWEEP_LION_KERNEL", "compiled")
    assert dispatch.kernel_for(cpu) == "compiled"
    monkeypatch.setenv("LIONSWEEP_LION_KERNEL", "cuda")
    with pytest.raises(ValueError, match="LIONSWEEP_LION_KERNEL must be 'auto', 'triton' or"):
        dispatch.kernel_for(cpu)


def compiled_copy():
    """A second ``optim.triton_lion`` compiled for the GPU (the fixture's copy interprets)."""
    import importlib.util

    before = os.environ.pop("TRITON_INTERPRET", None)
    try:
        spec = importlib.util.spec_from_file_location(
            "optim._triton_lion_compiled", Path(__file__).parents[1] / "optim" / "triton_lion.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if before is not None:
            os.environ["TRITON_INTERPRET"] = before
    return module


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kahan", [False, True])
def test_on_cuda_the_kernel_matches_the_reference_and_the_interpreter(triton_lion, dtype, kahan):
    compiled = compiled_copy()
    n = 3 * 1024 + 7
    outs = []
    for run in ("gpu", "interpreted", "reference"):
        p, m, comp = state(n, dtype, torch.float32 if kahan else dtype, kahan)
        p, m = p.cuda(), m.cuda()
        comp = comp.cuda() if comp is not None else None
        counter = torch.zeros((), dtype=torch.int64, device="cuda")
        for g in grads(n, dtype, steps=3):
            g = g.cuda()
            if run == "reference":
                kernels.lion(
                    [p], [g], [m], comps=[comp], nonfinite=counter, impl="reference", **hyper()
                )
                continue
            hp = kernels.hyperparameter_tensor(device="cuda", **hyper())
            module = compiled if run == "gpu" else triton_lion
            module.lion_flat(p, g, m, hp, counter, comp, block=1024 if run == "gpu" else BLOCK)
        outs.append(tuple(t.cpu() if t is not None else None for t in (p, m, comp)) + (counter,))
    gpu, interpreted, reference = outs
    assert_same(gpu, reference)
    assert_same(gpu, interpreted)
    assert int(gpu[3]) == int(reference[3]) == 9
