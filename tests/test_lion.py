"""optim.Lion: the update rule, the three impls against each other, state and groups.

The fused impl compiles one small kernel per dtype combination; the compiled
function is cached for the whole process, so these tests share it.
"""

import copy
import io

import pytest
import torch

from optim import Lion
from optim.schedules import warmup_cosine

IMPLS = ("reference", "foreach", "fused")
SHAPES = [(7, 3), (100,), (33, 5), (4, 4, 2), (), (0, 3)]


def transcription(params, grads_per_step, groups, maximize=False):
    """The update rule written out literally in float64, one element-wise formula per line."""
    thetas = [p.detach().double().clone() for p in params]
    moms = [torch.zeros_like(t) for t in thetas]
    for grads in grads_per_step:
        for i, g in enumerate(grads):
            lr, (b1, b2), wd = groups[i]
            g = -g.double() if maximize else g.double()
            u = torch.sign(b1 * moms[i] + (1 - b1) * g)
            thetas[i] = thetas[i] * (1 - lr * wd) - lr * u
            moms[i] = b2 * moms[i] + (1 - b2) * g
    return thetas


def make_params(dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen).to(dtype)) for s in SHAPES]


def group_spec(params, wd=0.1):
    """Three groups with different lr / betas / weight decay (one without decay)."""
    return [
        {"params": params[:2]},
        {"params": params[2:4], "lr": 3e-3, "betas": (0.8, 0.95), "weight_decay": 0.0},
        {"params": params[4:], "lr": 2e-2, "weight_decay": 0.5},
    ], {"lr": 1e-2, "weight_decay": wd}


def grad_stream(steps, dtype=torch.float32, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen).to(dtype) for s in SHAPES] for _ in range(steps)]


def run(impl, steps=100, dtype=torch.float32, maximize=False, momentum_dtype=None, wd=0.1):
    params = make_params(dtype)
    groups, kw = group_spec(params, wd)
    opt = Lion(groups, impl=impl, maximize=maximize, momentum_dtype=momentum_dtype, **kw)
    for grads in grad_stream(steps, dtype):
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
    return params, opt


def per_param_hypers(opt):
    out = []
    for group in opt.param_groups:
        out += [(group["lr"], group["betas"], group["weight_decay"])] * len(group["params"])
    return out


def assert_close_params(a, b, atol=1e-6, rtol=1e-6):
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.detach().double(), y.detach().double(), atol=atol, rtol=rtol)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_matches_transcription_over_100_steps(impl, maximize, wd):
    params, opt = run(impl, maximize=maximize, wd=wd)
    expected = transcription(
        make_params(), grad_stream(100), per_param_hypers(opt), maximize=maximize
    )
    assert_close_params(params, expected, atol=2e-5, rtol=1e-5)
    moved = [not torch.equal(p.detach(), p0) for p, p0 in zip(params, make_params(), strict=True)]
    assert moved == [p.numel() > 0 for p in params]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_impls_agree(dtype):
    ref, ref_opt = run("reference", dtype=dtype)
    for impl in ("foreach", "fused"):
        out, opt = run(impl, dtype=dtype)
        tol = 1e-6 if dtype == torch.float32 else 1e-2
        assert_close_params(out, ref, atol=tol)
        assert all(p.dtype == dtype for p in out)
        for p, q in zip(out, ref, strict=True):
            torch.testing.assert_close(
                opt.state[p]["exp_avg"], ref_opt.state[q]["exp_avg"], atol=tol, rtol=tol
            )


def test_low_precision_params_compute_in_fp32():
    """bf16 params: the step is computed in fp32 and rounded once, not done in bf16."""
    params, opt = run("reference", steps=20, dtype=torch.bfloat16, wd=0.1)
    thetas = [p.detach().float() for p in make_params(torch.bfloat16)]
    moms = [torch.zeros_like(t, dtype=torch.bfloat16) for t in thetas]
    for grads in grad_stream(20, torch.bfloat16):
        for i, (g, (lr, (b1, b2), wd)) in enumerate(zip(grads, per_param_hypers(opt), strict=True)):
            g, m = g.float(), moms[i].float()
            u = torch.sign(m.mul(b1).add(g, alpha=1 - b1))
            thetas[i] = thetas[i].mul(1 - lr * wd).add(u, alpha=-lr).bfloat16().float()
            moms[i] = m.mul(b2).add(g, alpha=1 - b2).bfloat16()
    assert_close_params(params, thetas, atol=0, rtol=0)


@pytest.mark.parametrize("impl", IMPLS)
def test_momentum_dtype_bf16_halves_state(impl):
    params, opt = run(impl, steps=30, momentum_dtype=torch.bfloat16)
    ref, _ = run("reference", steps=30, momentum_dtype=torch.bfloat16)
    assert_close_params(params, ref)
    for p in params:
        m = opt.state[p]["exp_avg"]
        assert m.dtype == torch.bfloat16
        assert m.element_size() * 2 == p.element_size()
    fp32_m, _ = run(impl, steps=30)
    # bf16 momentum changes the trajectory only slightly
    assert_close_params(params, fp32_m, atol=0.1, rtol=0)


@pytest.mark.parametrize(("first", "second"), [(a, b) for a in IMPLS for b in IMPLS if a != b])
def test_checkpoint_reload_across_impls(first, second):
    """50 steps with one impl, save, load into another impl, 50 more: same as 100 straight."""
    straight, _ = run("reference", steps=100)
    stream = grad_stream(100)
    params = make_params()
    groups, kw = group_spec(params)
    opt = Lion(groups, impl=first, **kw)
    for grads in stream[:50]:
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
    buf = io.BytesIO()
    torch.save({"model": [p.detach().clone() for p in params], "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf)
    params2 = [torch.nn.Parameter(t) for t in ckpt["model"]]
    groups2, kw2 = group_spec(params2)
    opt2 = Lion(groups2, impl=second, lr=123.0)  # hyperparameters come from the checkpoint
    opt2.load_state_dict(ckpt["opt"])
    assert opt2.param_groups[0]["lr"] == kw2["lr"]
    for grads in stream[50:]:
        for p, g in zip(params2, grads, strict=True):
            p.grad = g.clone()
        opt2.step()
    assert_close_params(params2, straight)
    # the first optimizer's state is not aliased by the second
    m_before = opt.state[params[0]]["exp_avg"].clone()
    opt2.step()
    assert torch.equal(opt.state[params[0]]["exp_avg"], m_before)


def test_load_state_dict_keeps_momentum_dtype_and_precision():
    params, opt = run("reference", steps=10)
    lowp = [torch.nn.Parameter(p.detach().bfloat16()) for p in params]
    groups, kw = group_spec(lowp)
    opt2 = Lion(groups, impl="reference", momentum_dtype=torch.float32, **kw)
    opt2.load_state_dict(opt.state_dict())
    for p, q in zip(params, lowp, strict=True):
        m2 = opt2.state[q]["exp_avg"]
        assert m2.dtype == torch.float32
        assert torch.equal(m2, opt.state[p]["exp_avg"])  # not rounded through bf16


def test_old_state_dict_without_maximize_loads():
    params, opt = run("foreach", steps=3)
    sd = copy.deepcopy(opt.state_dict())
    for g in sd["param_groups"]:
        del g["maximize"]
    opt.load_state_dict(sd)
    assert all(g["maximize"] is False for g in opt.param_groups)
    opt.step()


def test_pickle_keeps_impl_and_momentum_dtype():
    params, opt = run("foreach", steps=2, momentum_dtype=torch.bfloat16)
    buf = io.BytesIO()
    torch.save(opt, buf)
    buf.seek(0)
    opt2 = torch.load(buf, weights_only=False)
    assert opt2.impl == "foreach" and opt2.momentum_dtype == torch.bfloat16


@pytest.mark.parametrize("impl", IMPLS)
def test_with_lr_scheduler(impl):
    def train(impl):
        params = make_params()
        opt = Lion(params, lr=1e-2, weight_decay=0.1, impl=impl)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(5, 30))
        lrs = []
        for grads in grad_stream(30):
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            opt.step()
            lrs.append(opt.param_groups[0]["lr"])
            sched.step()
        return params, lrs

    params, lrs = train(impl)
    ref, ref_lrs = train("reference")
    assert lrs == ref_lrs and len(set(lrs)) > 20
    assert_close_params(params, ref)


def test_param_without_grad_is_skipped_like_reference():
    for impl in IMPLS:
        params = make_params()
        before = [p.detach().clone() for p in params]
        opt = Lion(params, lr=1e-2, weight_decay=0.5, impl=impl)
        for step, grads in enumerate(grad_stream(4)):
            for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                p.grad = None if (i == 1 or (i == 2 and step % 2)) else g
            opt.step()
        assert torch.equal(params[1].detach(), before[1]), impl
        assert "exp_avg" not in opt.state[params[1]] or not opt.state[params[1]]["exp_avg"].any()
        if impl == "reference":
            ref = [p.detach().clone() for p in params]
        else:
            assert_close_params(params, ref)


@pytest.mark.parametrize("impl", IMPLS)
def test_sign_of_zero_is_zero_and_nonfinite_grads_are_skipped_and_counted(impl):
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0, 4.0, 5.0, 6.0]))
    opt = Lion([p], lr=0.5, weight_decay=0.1, impl=impl)
    p.grad = torch.tensor([0.0, -0.0, 1.0, float("nan"), float("inf"), -float("inf")])
    opt.step()
    # sign(0) = 0: only decay moves the first two; the non-finite ones keep their value
    # (no decay either) and their momentum stays finite, so the next step moves them.
    assert p.detach().tolist() == pytest.approx([0.95, -1.9, 2.35, 4.0, 5.0, 6.0])
    assert opt.state[p]["exp_avg"].tolist() == pytest.approx([0, 0, 0.01, 0, 0, 0])
    assert opt.nonfinite_grads == 3
    p.grad = torch.ones(6)
    opt.step()
    assert p.detach()[3:].tolist() == pytest.approx([4.0 * 0.95 - 0.5, 5 * 0.95 - 0.5, 5.2])
    assert opt.nonfinite_grads == 3


@pytest.mark.parametrize("impl", IMPLS)
def test_nonfinite_mask_skips_without_counting(impl):
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    opt = Lion([p], lr=0.5, impl=impl, nonfinite="mask")
    p.grad = torch.tensor([1.0, float("nan"), -float("inf")])
    opt.step()
    assert p.detach().tolist() == [0.5, 2.0, 3.0]
    assert torch.isfinite(opt.state[p]["exp_avg"]).all()
    assert opt.nonfinite_grads == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_nonfinite_raise_reports_after_leaving_the_coordinates(impl):
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = Lion([p], lr=0.5, impl=impl, nonfinite="raise")
    p.grad = torch.tensor([1.0, float("nan")])
    with pytest.raises(FloatingPointError, match="1 gradient values were NaN or infinite"):
        opt.step()
    assert p.detach().tolist() == [0.5, 2.0]
    assert torch.isfinite(opt.state[p]["exp_avg"]).all()
    p.grad = torch.tensor([1.0, 1.0])
    opt.step()  # finite again: no error


@pytest.mark.parametrize("impl", IMPLS)
def test_kahan_sum_lets_small_bf16_updates_accumulate(impl):
    """A bf16 weight at 1.0, lr 1e-4 and a constant gradient: 1,000 steps move it by 0.1
    (Lion's step is exactly lr per element). Rounded every step it never moves (1 − 1e-4
    rounds back to 1.0 in bf16); with Kahan summation it moves by 0.1 within 10%."""
    moved = {}
    for kahan in (False, True):
        p = torch.nn.Parameter(torch.ones(64, dtype=torch.bfloat16))
        opt = Lion([p], lr=1e-4, betas=(0.9, 0.99), impl=impl, kahan_sum=kahan)
        for _ in range(1000):
            p.grad = torch.ones_like(p)
            opt.step()
        moved[kahan] = 1.0 - p.detach().float()
        if kahan:
            assert opt.state[p]["kahan_comp"].dtype == torch.bfloat16
        else:
            assert "kahan_comp" not in opt.state[p]
    assert (moved[False] == 0).all()
    assert ((moved[True] - 0.1).abs() <= 0.01).all(), moved[True]


def test_kahan_sum_leaves_fp32_params_alone_and_round_trips_in_the_state_dict():
    p = torch.nn.Parameter(torch.ones(4))
    q = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    opt = Lion([p, q], lr=1e-4, kahan_sum=True)
    for _ in range(3):
        p.grad, q.grad = torch.ones(4), torch.ones(4, dtype=torch.bfloat16)
        opt.step()
    assert "kahan_comp" not in opt.state[p] and opt.state[q]["kahan_comp"].abs().sum() > 0
    saved = copy.deepcopy(opt.state_dict())
    q2 = torch.nn.Parameter(q.detach().clone())
    p2 = torch.nn.Parameter(p.detach().clone())
    opt2 = Lion([p2, q2], lr=1e-4, kahan_sum=True, impl="foreach")
    opt2.load_state_dict(saved)
    torch.testing.assert_close(opt2.state[q2]["kahan_comp"], opt.state[q]["kahan_comp"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1e-3}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"betas": (1.0, 0.99)}, r"betas\[0\]"),
        ({"betas": (0.9, -0.1)}, r"betas\[1\]"),
        ({"betas": (0.9,)}, "betas"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"impl": "triton"}, "impl"),
        ({"momentum_dtype": torch.int8}, "momentum_dtype"),
        ({"nonfinite": "ignore"}, "nonfinite"),
        ({"kahan_sum": 1}, "kahan_sum"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Lion([torch.nn.Parameter(torch.zeros(2))], **kwargs)


def test_invalid_param_group_is_rejected_and_not_added():
    opt = Lion([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match="weight_decay"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "weight_decay": -1})
    assert len(opt.param_groups) == 1


def test_closure_and_zero_grad_reference():
    p = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = Lion([p], lr=0.1, impl="reference")

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(2.0)
    assert p.detach().tolist() == pytest.approx([0.9, -0.9])


@pytest.mark.parametrize("impl", IMPLS)
def test_agrees_with_lion_pytorch_and_shares_its_defaults(impl):
    """lucidrains' lion-pytorch (the reference most users know): same defaults, and the same
    parameters after 50 steps with weight decay, to fp32 rounding."""
    from lion_pytorch import Lion as LionPytorch

    ours, theirs = Lion([torch.nn.Parameter(torch.zeros(1))]), LionPytorch([torch.zeros(1)])
    for key in ("lr", "betas", "weight_decay"):
        assert ours.defaults[key] == theirs.defaults[key], key
    a, b = make_params(), make_params()
    opt_a = Lion(a, lr=3e-3, betas=(0.9, 0.99), weight_decay=0.2, impl=impl)
    opt_b = LionPytorch(b, lr=3e-3, betas=(0.9, 0.99), weight_decay=0.2)
    for grads in grad_stream(50):
        for p, q, g in zip(a, b, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    assert_close_params(a, b, atol=1e-6, rtol=1e-6)
