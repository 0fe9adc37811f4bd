"""optim.schedules: warmup + constant / cosine / inverse-time multipliers for LambdaLR."""

import math
import pickle

import pytest

from optim.schedules import warmup_constant, warmup_cosine, warmup_inverse_time


def test_warmup_constant():
    f = warmup_constant(4)
    assert [f(t) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_constant(0)(0) == 1.0


def test_warmup_cosine_shape():
    f = warmup_cosine(10, 110, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(110) == pytest.approx(0.1)
    assert f(500) == pytest.approx(0.1)
    values = [f(t) for t in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_warmup_inverse_time():
    f = warmup_inverse_time(2, kappa=0.5)
    assert [f(t) for t in range(2)] == [0.5, 1.0]
    assert f(2) == 1.0
    assert f(4) == pytest.approx(1 / 2)
    assert f(102) == pytest.approx(1 / 51)
    assert warmup_inverse_time(0, 0.0)(1000) == 1.0


def test_multipliers_pickle():
    for f in (warmup_constant(3), warmup_cosine(3, 10), warmup_inverse_time(3, 0.1)):
        g = pickle.loads(pickle.dumps(f))
        assert [g(t) for t in range(12)] == [f(t) for t in range(12)]


@pytest.mark.parametrize(
    ("factory", "args", "match"),
    [
        (warmup_constant, (-1,), "warmup_steps"),
        (warmup_constant, (1.5,), "warmup_steps"),
        (warmup_cosine, (10, 5), "total_steps"),
        (warmup_cosine, (0, 10, 1.5), "min_ratio"),
        (warmup_inverse_time, (0, -0.1), "kappa"),
        (warmup_inverse_time, (0, math.inf), "kappa"),
    ],
)
def test_bad_arguments(factory, args, match):
    with pytest.raises(ValueError, match=match):
        factory(*args)


def test_with_lambda_lr():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(2, 6))
    lrs = []
    for _ in range(7):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.05, 0.1, 0.1])
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    state = sched.state_dict()
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(1, 2))
    sched2.load_state_dict(state)
    assert sched2.lr_lambdas[0] == warmup_cosine(2, 6)
