"""The native CPU step (optim/lion_cpu.c through optim/native.py): the same numbers as the
reference and the compiled kernel, one call for a list of tensors, built once, and a
fallback where it cannot be built."""

import os
import subprocess
import sys
import tempfile

import pytest
import torch

from optim import Lion, kernels, native

# Sizes around the vector width (8), the 16-element thread boundaries, the serial cut-off
# and large enough that two threads split tensors in the middle.
SIZES = [1, 7, 8, 9, 15, 16, 17, 63, 4095, 4097, 65535, 70001, 300_003]


def tensors(seed, sizes=SIZES, nonfinite=False):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(n, generator=gen) for n in sizes]
    grads = [torch.randn(n, generator=gen) for n in sizes]
    moms = [torch.randn(n, generator=gen) * 0.1 for n in sizes]
    if nonfinite:
        for g in grads:
            g[:: max(len(g) // 3, 1)] = float("nan")
        grads[-1][5] = float("inf")
        grads[-2][-1] = float("-inf")
    # exact zeros: sign(0) must be 0 (the parameter only decays)
    grads[3].zero_()
    moms[3].zero_()
    return params, grads, moms


def clone(ts):
    return [t.clone() for t in ts]


@pytest.fixture
def lib():
    lib = native.library()
    assert lib is not None, native.error  # the machine has a C compiler: it must build
    return lib


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(
    ("lr", "maximize", "nonfinite"),
    [(1e-3, False, False), (3e-2, True, True), (torch.tensor(2e-3), False, True)],
)
def test_native_step_matches_the_reference_and_counts_nonfinite(
    lib, threads, lr, maximize, nonfinite
):
    params, grads, moms = tensors(1, nonfinite=nonfinite)
    hyper = {"lr": lr, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1, "maximize": maximize}
    ref_p, ref_m, ref_count = clone(params), clone(moms), torch.zeros((), dtype=torch.int64)
    kernels.lion(ref_p, grads, ref_m, impl="reference", nonfinite=ref_count, **hyper)
    count = torch.zeros((), dtype=torch.int64)
    hp = kernels.hyperparameter_tensor(**hyper, device="cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        native.step(lib, params, grads, moms, hp, count)
    finally:
        torch.set_num_threads(before)
    for p, r in zip(params, ref_p, strict=True):
        torch.testing.assert_close(p, r, rtol=0, atol=1e-6)
    for m, r in zip(moms, ref_m, strict=True):
        torch.testing.assert_close(m, r, rtol=1e-6, atol=1e-7)
    assert int(count) == int(ref_count)
    assert (int(count) > 0) == nonfinite
    # sign(0) = 0: a zero gradient on a zero momentum only decays the parameter
    start = tensors(1, nonfinite=nonfinite)[0][3]
    lr_value = float(lr)
    torch.testing.assert_close(params[3], start * (1 - lr_value * 0.1), rtol=0, atol=0)


def test_native_step_is_bit_identical_to_the_compiled_kernel(lib, monkeypatch):
    """The same operations in the same order, no fused multiply-add: the same bits."""
    params, grads, moms = tensors(2, nonfinite=True)
    hyper = {"lr": 1e-3, "beta1": 0.95, "beta2": 0.98, "weight_decay": 0.3, "maximize": False}
    hp = kernels.hyperparameter_tensor(**hyper, device="cpu")
    compiled_p, compiled_m = clone(params), clone(moms)
    compiled_count, native_count = (torch.zeros((), dtype=torch.int64) for _ in range(2))
    monkeypatch.setenv("LIONSWEEP_NATIVE", "0")
    kernels.lion(compiled_p, grads, compiled_m, impl="fused", nonfinite=compiled_count, **hyper)
    monkeypatch.delenv("LIONSWEEP_NATIVE")
    native.step(lib, params, grads, moms, hp, native_count)
    for a, b in zip(params + moms, compiled_p + compiled_m, strict=True):
        assert torch.equal(a, b)
    assert int(native_count) == int(compiled_count) > 0


def test_a_nonfinite_gradient_leaves_its_coordinates_and_is_skipped_uncounted(lib):
    p, g, m = torch.ones(100), torch.full((100,), 0.5), torch.zeros(100)
    g[10], g[55], g[99] = float("nan"), float("inf"), float("-inf")
    hp = kernels.hyperparameter_tensor(
        lr=0.25, beta1=0.9, beta2=0.99, weight_decay=0.0, maximize=False, device="cpu"
    )
    native.step(lib, [p], [g], [m], hp, None)  # nonfinite="mask": no counter
    bad = torch.zeros(100, dtype=torch.bool)
    bad[[10, 55, 99]] = True
    assert torch.equal(p[bad], torch.ones(3)) and torch.equal(m[bad], torch.zeros(3))
    assert torch.equal(p[~bad], torch.full((97,), 0.75))
    torch.testing.assert_close(m[~bad], torch.full((97,), 0.005))


def test_the_default_lion_steps_fp32_cpu_models_natively_without_compiling(monkeypatch):
    """impl="auto" on fp32 CPU parameters: one native call, no inductor kernel to wait for
    (no background compile starts), and the same training as the reference."""
    calls = []
    real_step = native.step
    monkeypatch.setattr(native, "step", lambda *a: calls.append(len(a[1])) or real_step(*a))

    def run(impl):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(10, 64), torch.nn.LayerNorm(64), torch.nn.Linear(64, 1)
        )
        opt = Lion(model.parameters(), lr=3e-3, weight_decay=0.1, impl=impl)
        x, y = torch.randn(64, 10), torch.randn(64, 1)
        for _ in range(20):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        return list(model.parameters()), opt

    asked = []
    real_ready = kernels.readiness.ready
    monkeypatch.setattr(
        kernels.readiness, "ready", lambda *a, **k: asked.append(a) or real_ready(*a, **k)
    )
    auto, opt = run("auto")
    assert calls == [6] * 20  # every tensor, the small ones too, in one call per step
    assert asked == []  # no compiled kernel was asked for (none compiles in the background)
    for a, r in zip(auto, run("reference")[0], strict=True):
        torch.testing.assert_close(a, r, rtol=0, atol=1e-5)
    assert opt.nonfinite_grads == 0


def test_bf16_and_kahan_parameters_still_take_the_compiled_kernel(monkeypatch):
    calls = []
    real_step = native.step
    monkeypatch.setattr(native, "step", lambda *a: calls.append(len(a[1])) or real_step(*a))
    ps = [torch.nn.Parameter(torch.randn(5000).bfloat16()), torch.nn.Parameter(torch.randn(5000))]
    opt = Lion(ps, lr=1e-3, impl="fused", kahan_sum=True)
    for p in ps:
        p.grad = torch.randn_like(p)
    opt.step()
    assert calls == [1]  # only the fp32 one
    assert "kahan_comp" in opt.state[ps[0]]


def _run(code, env, timeout=300):
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )


STEP_ONCE = (
    "import time, torch\n"
    "from optim import Lion, native\n"
    "p = torch.nn.Parameter(torch.ones(100_000)); p.grad = torch.ones(100_000)\n"
    "opt = Lion([p], lr=0.25)\n"
    "t = time.perf_counter(); opt.step(); took = time.perf_counter() - t\n"
    "print(native.library() is not None, p.detach().unique().tolist(), round(took, 3))\n"
)


@pytest.mark.slow
def test_the_library_is_built_once_per_cache_and_shared_by_concurrent_processes(tmp_path):
    """Four processes start on an empty cache together: each gets a working library, one
    file is left (the builds replace it atomically), and later processes load it."""
    env = {**os.environ, "LIONSWEEP_CACHE_DIR": str(tmp_path)}
    env.pop("LIONSWEEP_NATIVE", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STEP_ONCE], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert {tuple(o[:2]) for o in outs} == {("True", "[0.75]")}
    built = sorted(tmp_path.glob("*.so"))
    assert len(built) == 1
    assert not [f for f in tmp_path.iterdir() if f not in built]  # no temporary left over
    mtime = built[0].stat().st_mtime_ns
    again = _run(STEP_ONCE, env)
    assert again.stdout.split()[:2] == ["True", "[0.75]"]
    assert built[0].stat().st_mtime_ns == mtime  # loaded, not rebuilt


@pytest.mark.slow
def test_without_a_c_compiler_lion_still_steps(tmp_path):
    code = STEP_ONCE + "print(native.error)\n"
    env = {
        **os.environ,
        "CC": "/bin/false",
        "CXX": "/bin/false",  # and no compiled kernel either: foreach steps
        "LIONSWEEP_CACHE_DIR": str(tmp_path / "native"),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
    }
    done = _run(code, env)
    assert done.returncode == 0, done.stderr[-2000:]
    first, reason = done.stdout.strip().splitlines()
    assert first.split()[:2] == ["False", "[0.75]"]
    assert reason.startswith("RuntimeError: false failed")


def test_autograd_sees_the_native_update_as_an_in_place_change():
    """A parameter saved for a backward and then stepped is an error, as with any in-place
    update, not a silently wrong gradient."""
    w = torch.nn.Parameter(torch.randn(100))
    opt = Lion([w], lr=1e-3)
    w.grad = torch.randn(100)
    loss = (w * w).sum()  # saves w for the backward
    version = w._version
    opt.step()
    assert w._version > version
    assert opt.state[w]["exp_avg"]._version > 0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_an_unwritable_cache_falls_back_to_the_temp_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = STEP_ONCE + "print(native._loaded[0]._name)\n"
    env = {**os.environ, "LIONSWEEP_CACHE_DIR": str(blocker / "cache")}
    done = _run(code, env)
    assert done.returncode == 0, done.stderr[-2000:]
    first, path = done.stdout.strip().splitlines()
    assert first.split()[:2] == ["True", "[0.75]"]
    assert path.startswith(tempfile.gettempdir()) and path.endswith(".so")


def test_only_plain_tensors_that_autograd_lets_us_update_take_the_native_step():
    class Sub(torch.Tensor):
        pass

    p, g, m = torch.zeros(10), torch.zeros(10), torch.zeros(10)
    with torch.no_grad():
        assert native.supports(p, g, m)
        assert not native.supports(p.as_subclass(Sub), g, m)  # data_ptr may mean nothing
        assert not native.supports(p, torch._neg_view(g), m)  # a lazily negated view
        assert not native.supports(p, g.bfloat16(), m)
        assert not native.supports(p[::2], g[::2], m[::2])
        with torch.inference_mode():
            inference = torch.zeros(10)
        assert not native.supports(inference, g, m)  # foreach raises for it, as it should
    leaf = torch.zeros(10, requires_grad=True)
    assert not native.supports(leaf, g, m)  # grad mode on: an in-place update is refused
    with torch.no_grad():
        assert native.supports(leaf, g, m)


def test_a_parameter_listed_twice_steps_the_same_on_every_run(lib):
    """Two threads must not race on one tensor: overlapping tensors are stepped in turn."""
    n = 1 << 20
    results = []
    for impl in ("native", "native", "foreach"):
        gen = torch.Generator().manual_seed(3)
        p, g, m = (torch.randn(n, generator=gen) for _ in range(3))
        hyper = {"lr": 0.01, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0, "maximize": False}
        if impl == "native":
            hp = kernels.hyperparameter_tensor(**hyper, device="cpu")
            native.step(lib, [p, p], [g, g], [m, m], hp, None)
        else:
            kernels.lion([p, p], [g, g], [m, m], impl="foreach", **hyper)
        results.append(p)
    assert torch.equal(results[0], results[1])
    torch.testing.assert_close(results[0], results[2], rtol=0, atol=1e-6)


def test_a_damaged_library_in_the_cache_is_built_again(tmp_path):
    env = {**os.environ, "LIONSWEEP_CACHE_DIR": str(tmp_path)}
    assert _run(STEP_ONCE, env).stdout.split()[:2] == ["True", "[0.75]"]
    (built,) = tmp_path.glob("*.so")
    built.write_bytes(b"")  # as a full disk or an interrupted copy might leave it
    again = _run(STEP_ONCE, env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.split()[:2] == ["True", "[0.75]"]
    assert built.stat().st_size > 1000 and built.stat().st_mode & 0o755 == 0o755
