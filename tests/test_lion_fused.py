"""optim.Lion(impl="fused"): flat buffers, autograd interplay, no recompiles, real training."""

import io
import os
import subprocess
import sys

import pytest
import torch
from torch._dynamo.utils import counters

from optim import Lion
from optim.schedules import warmup_inverse_time


def mlp(seed=0, width=32):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(10, width), torch.nn.GELU(), torch.nn.Linear(width, 1)
    )


BATCH_GEN = torch.Generator().manual_seed(0)
X = torch.randn(64, 10, generator=BATCH_GEN)
Y = (X[:, :1] * 2 - X[:, 1:2]).sin() + 0.1 * torch.randn(64, 1, generator=BATCH_GEN)


def train(impl, steps=60, set_to_none=True, accumulate=1, dtype=torch.float32, **kw):
    """Train the MLP on one fixed batch; return the loss curve, model and optimizer."""
    model = mlp().to(dtype)
    opt = Lion(model.parameters(), lr=3e-3, weight_decay=0.1, impl=impl, **kw)
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=set_to_none)
        for _ in range(accumulate):
            loss = torch.nn.functional.mse_loss(model(X.to(dtype)).float(), Y)
            loss.backward()
        losses.append(loss.item())
        opt.step()
    return losses, model, opt


def storage_ptr(t):
    return t.untyped_storage().data_ptr()


@pytest.mark.parametrize(
    ("set_to_none", "accumulate"), [(True, 1), (False, 1), (False, 2), (True, 3)]
)
def test_mlp_loss_curves_match_across_impls(set_to_none, accumulate):
    curves = {
        impl: train(impl, set_to_none=set_to_none, accumulate=accumulate)[0]
        for impl in ("reference", "foreach", "fused")
    }
    ref = curves["reference"]
    assert ref[-1] < 0.5 * ref[0]  # it learns
    for impl in ("foreach", "fused"):
        assert curves[impl] == pytest.approx(ref, rel=1e-5, abs=1e-7), impl


def test_bf16_model_trains_the_same():
    ref = train("reference", steps=30, dtype=torch.bfloat16)[0]
    fused = train("fused", steps=30, dtype=torch.bfloat16)[0]
    assert fused == pytest.approx(ref, rel=1e-3)
    assert ref[-1] < ref[0]


def test_params_grads_and_momentum_live_in_flat_buffers_with_flatten():
    _, model, opt = train("fused", steps=2, set_to_none=False, flatten=True)
    params = list(model.parameters())
    assert len({storage_ptr(p) for p in params}) == 1
    assert len({storage_ptr(p.grad) for p in params}) == 1
    moms = [opt.state[p]["exp_avg"] for p in params]
    assert len({storage_ptr(m) for m in moms}) == 1
    assert storage_ptr(params[0]) != storage_ptr(params[0].grad) != storage_ptr(moms[0])
    # zero_grad(set_to_none=False) zeroes the views in place and autograd accumulates into them
    grads = [p.grad for p in params]
    opt.zero_grad(set_to_none=False)
    torch.nn.functional.mse_loss(model(X), Y).backward()
    assert all(p.grad is g for p, g in zip(params, grads, strict=True))
    assert all(p.grad.abs().sum() > 0 for p in params)


def test_set_to_none_then_backward_reattaches_grad_views():
    _, model, opt = train("fused", steps=2, set_to_none=True, flatten=True)
    params = list(model.parameters())
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in params)
    torch.nn.functional.mse_loss(model(X), Y).backward()
    fresh = {storage_ptr(p.grad) for p in params}
    assert len(fresh) == len(params)  # autograd allocated new tensors
    opt.step()
    assert len({storage_ptr(p.grad) for p in params}) == 1  # copied in, views again


def test_changing_hyperparameters_and_model_size_does_not_recompile(monkeypatch):
    monkeypatch.setenv("LIONSWEEP_NATIVE", "0")  # the compiled kernel serves fp32 too
    params = [torch.nn.Parameter(torch.randn(50, 3)), torch.nn.Parameter(torch.randn(7))]
    opt = Lion(params, lr=1e-3, impl="fused")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_inverse_time(2, 0.5))
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()  # compiles (or reuses the process-wide kernel)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1  # the fused kernel was compiled in this process
    calls = counters["stats"]["calls_captured"]
    for step in range(6):
        group = opt.param_groups[0]
        group["weight_decay"] = 0.1 * step
        group["betas"] = (0.9 - 0.1 * step, 0.99 - 0.01 * step)
        group["maximize"] = bool(step % 2)
        opt.step()
        sched.step()
    # a new trial in the same process: another model size, new optimizer
    other = [torch.nn.Parameter(torch.randn(123, 45)) for _ in range(3)]
    opt2 = Lion(other, lr=5e-4, weight_decay=0.3, impl="fused")
    for p in other:
        p.grad = torch.randn_like(p)
    opt2.step()
    assert counters["stats"]["unique_graphs"] == graphs
    assert counters["stats"]["calls_captured"] == calls  # nothing was traced again


def test_the_kernel_is_compiled_ahead_of_time_and_serves_every_size(monkeypatch):
    """Calls skip dynamo's guards (a fixed cost per tensor per step) and stay exact for
    sizes other than the one it was built with."""
    monkeypatch.setenv("LIONSWEEP_NATIVE", "0")  # the compiled kernel serves fp32 too
    from optim import kernels

    sizes = [(4096,), (64, 97), (5, 3, 333)]
    params = [torch.nn.Parameter(torch.randn(s)) for s in sizes]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    fused = Lion(params, lr=1e-3, weight_decay=0.1, impl="fused")
    ref = Lion(twins, lr=1e-3, weight_decay=0.1, impl="reference")
    for _ in range(3):
        for p, t in zip(params, twins, strict=True):
            p.grad = torch.randn_like(p)
            t.grad = p.grad.clone()
        fused.step()
        ref.step()
    kernel = kernels._compiled_kernel(False, True, torch.float32, torch.float32, "cpu")
    assert kernel._precompiled is not None
    for p, t in zip(params, twins, strict=True):
        torch.testing.assert_close(p, t, rtol=0, atol=1e-6)


def test_frozen_params_and_repointed_data_still_match_reference():
    def run(impl):
        torch.manual_seed(1)
        a = torch.nn.Parameter(torch.randn(5, 5))
        frozen = torch.nn.Parameter(torch.randn(3), requires_grad=False)
        b = torch.nn.Parameter(torch.randn(8))
        opt = Lion([a, frozen, b], lr=1e-2, weight_decay=0.2, impl=impl)
        gen = torch.Generator().manual_seed(2)
        for step in range(12):
            a.grad = torch.randn(5, 5, generator=gen)
            b.grad = torch.randn(8, generator=gen)
            if step == 5:
                # user code swaps a parameter's storage: the flat buffer is rebuilt
                b.data = b.data.clone()
            opt.step()
        return [a.detach().clone(), frozen.detach().clone(), b.detach().clone()]

    ref = run("reference")
    fused = run("fused")
    for r, f in zip(ref, fused, strict=True):
        torch.testing.assert_close(f, r, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("impl", ["auto", "fused"])
def test_by_default_every_parameter_keeps_its_own_storage(impl, tmp_path):
    """Nothing is re-pointed: saving one parameter writes that parameter, a state dict
    round-trips through safetensors, and the gradients stay autograd's own tensors."""
    from safetensors.torch import load_file, save_file

    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Linear(128, 1))
    before = {n: storage_ptr(p) for n, p in model.named_parameters()}
    opt = Lion(model.parameters(), lr=1e-3, weight_decay=0.1, impl=impl)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 64)).pow(2).mean().backward()
        opt.step()
    assert {n: storage_ptr(p) for n, p in model.named_parameters()} == before
    bias = model[0].bias
    buf = io.BytesIO()
    torch.save(bias.detach(), buf)
    assert buf.tell() < 4 * bias.numel() + 2000  # its own 128 floats, not the model
    save_file(model.state_dict(), tmp_path / "m.safetensors")
    loaded = load_file(tmp_path / "m.safetensors")
    for name, t in model.state_dict().items():
        assert torch.equal(loaded[name], t)


def test_flatten_needs_the_fused_step_and_shares_one_storage():
    with pytest.raises(ValueError, match="flatten"):
        Lion([torch.nn.Parameter(torch.zeros(2))], impl="foreach", flatten=True)
    _, model, _ = train("auto", steps=1, flatten=True)
    assert len({storage_ptr(p) for p in model.parameters()}) == 1


def test_fused_rejects_unsupported_param_dtype():
    p = torch.nn.Parameter(torch.randn(4, dtype=torch.float64))
    p.grad = torch.randn(4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="fused"):
        Lion([p], impl="fused").step()
    Lion([p], impl="auto").step()  # auto falls back to foreach


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fused_matches_reference():
    def run(impl):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, device="cuda")) for s in [(64, 33), (17,)]]
        opt = Lion(params, lr=1e-3, weight_decay=0.1, impl=impl)
        for _ in range(20):
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()
        return params

    for r, f in zip(run("reference"), run("fused"), strict=True):
        torch.testing.assert_close(f, r, atol=1e-6, rtol=1e-6)


@pytest.mark.slow
def test_a_script_that_ends_while_the_kernel_compiles_exits_cleanly(tmp_path):
    """A short script with the default Lion ends before the background compile (empty
    inductor cache): the process waits for the compile and exits 0 (a daemon compile thread
    made it abort with SIGABRT at interpreter exit)."""
    code = (
        "import torch\n"
        "from optim import Lion\n"
        "model = torch.nn.Linear(256, 256)\n"
        "opt = Lion(model.parameters(), lr=1e-4)\n"
        "model(torch.randn(4, 256)).sum().backward()\n"
        "opt.step()\n"
        "import threading\n"
        "compiling = [t for t in threading.enumerate() if t.name == 'lion-compile']\n"
        "print('stepped', [t.daemon for t in compiling], flush=True)\n"
    )
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    env["LIONSWEEP_NATIVE"] = "0"  # fp32 on the CPU would take the native step
    env.pop("TORCHINDUCTOR_COMPILE_THREADS", None)  # the default: a pool of compile workers
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # still compiling when the script ended, in a thread the interpreter waits for
    assert done.stdout.strip() == "stepped [False]"
    assert "terminate called" not in done.stderr


@pytest.mark.slow
def test_auto_falls_back_to_foreach_without_a_compiler(tmp_path):
    """With no working C++ compiler, impl="auto" steps with foreach while the kernel compiles
    in the background, then warns once that it did not and keeps stepping with foreach."""
    code = (
        "import warnings, torch\n"
        "from optim import Lion\n"
        "import time\n"
        "p = torch.nn.Parameter(torch.ones(5000))\n"
        "p.grad = torch.ones(5000)\n"
        "opt = Lion([p], lr=0.25, impl='auto')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    k = 0\n"
        "    while not opt._fused_failed and k < 600:\n"
        "        opt.step(); k += 1; time.sleep(0.2)\n"
        "    opt.step(); k += 1\n"
        "ours = [w for w in caught if 'did not compile' in str(w.message)]\n"
        "print(len(ours), opt._fused_failed, p.detach().unique().tolist() == [1 - 0.25 * k])\n"
    )
    env = dict(os.environ, CC="/bin/false", CXX="/bin/false", TORCHINDUCTOR_CACHE_DIR=str(tmp_path))
    env["LIONSWEEP_CACHE_DIR"] = str(tmp_path / "native")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "True", "True"]


def test_step_inside_torch_compile_matches_reference():
    """A compiled training step traces Lion's step (auto uses the foreach path there)."""

    def run(compiled):
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 1)
        opt = Lion(model.parameters(), lr=1e-2, weight_decay=0.1, impl="auto")
        step = torch.compile(opt.step) if compiled else opt.step
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(X[:, :8]), Y).backward()
            step()
        return list(model.parameters())

    for c, e in zip(run(True), run(False), strict=True):
        torch.testing.assert_close(c, e, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("impl", ["auto", "foreach", "reference"])
def test_tensor_lr_and_its_scheduler_compile_into_one_graph(impl):
    """A tensor lr set by a scheduler is traced, not read back: no graph break, one graph,
    and the same parameters as the eager step with a float lr."""

    def run(compiled):
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 4)
        lr = torch.tensor(1e-2) if compiled else 1e-2
        opt = Lion(model.parameters(), lr=lr, weight_decay=0.1, impl=impl)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + t))

        def step():
            # Lion.step itself: the scheduler wraps opt.step in a function dynamo skips.
            type(opt).step(opt)

        if compiled:
            step = torch.compile(step)
        for _ in range(4):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(X[:, :8]), Y.expand(-1, 4)).backward()
            step()
            sched.step()
        return list(model.parameters())

    torch._dynamo.reset()
    counters.clear()
    compiled = run(True)
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] == 1
    for c, e in zip(compiled, run(False), strict=True):
        torch.testing.assert_close(c, e, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("impl", ["auto", "foreach"])
def test_grad_scaler_skips_overflowing_steps_and_then_trains(impl):
    """fp16 autocast with torch.amp.GradScaler: steps whose scaled gradients overflow are
    skipped (parameters and momentum untouched, the scale halves), then training proceeds
    as with any torch optimizer."""
    torch.manual_seed(0)
    model = mlp(width=64)
    opt = Lion(model.parameters(), lr=3e-3, weight_decay=0.1, impl=impl)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    losses, skipped = [], 0
    for _ in range(60):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = torch.nn.functional.mse_loss(model(X).float(), Y)
        before = [p.detach().clone() for p in model.parameters()]
        scale = scaler.get_scale()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if scaler.get_scale() < scale:  # overflow: the step was skipped
            skipped += 1
            for p, b in zip(model.parameters(), before, strict=True):
                assert torch.equal(p.detach(), b)
        losses.append(loss.item())
    assert skipped >= 5  # 2^40 overflows fp16 until the scale has come down
    assert scaler.get_scale() < 2.0**40
    assert opt.nonfinite_grads == 0  # the scaler kept every overflow from the optimizer
    assert all(torch.isfinite(opt.state[p]["exp_avg"]).all() for p in model.parameters())
    assert losses[-1] < 0.5 * losses[skipped]


@pytest.mark.slow
def test_a_compiled_model_keeps_training_while_the_kernel_compiles(tmp_path):
    """The background build traces in a child process: tracing here would set torch.fx's
    process-wide flag, and the user's compiled model, called meanwhile, would fail with
    "Detected that you are using FX to symbolically trace a dynamo-optimized function"
    (bf16 parameters take the compiled kernel; empty inductor cache)."""
    code = (
        "import threading, torch\n"
        "from optim import Lion, kernels\n"
        "torch.manual_seed(0)\n"
        "model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.GELU(),\n"
        "                            torch.nn.Linear(256, 256)).bfloat16()\n"
        "compiled = torch.compile(model)\n"
        "opt = Lion(model.parameters(), lr=1e-4)\n"
        "x = torch.randn(32, 256).bfloat16()\n"
        "step, ready = 0, None\n"
        "while ready is None or step < ready + 20:\n"
        "    opt.zero_grad()\n"
        "    compiled(x).float().square().mean().backward()\n"
        "    opt.step(); step += 1\n"
        "    if ready is None and not [t for t in threading.enumerate()\n"
        "                              if t.name == 'lion-compile']:\n"
        "        ready = step\n"
        "k = kernels._compiled_kernel(False, True, torch.bfloat16, torch.bfloat16, 'cpu')\n"
        "print(ready > 1, k._precompiled is not None, kernels.readiness.errors)\n"
    )
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True", "{}"]
