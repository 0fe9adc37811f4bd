"""The task registry and the built-in tasks (quadratic, digits, charlm, planted)."""

from __future__ import annotations

import json
import math
import sys
import textwrap

import pytest
import torch

from worker import tasks
from worker.harness import NullReporter, effective_config, run_trial
from worker.tasks import ParamSpec, TaskDefaults, charlm, digits, quadratic

tasks.load_builtins()


# Train with the foreach step (the fused one is covered end to end) on one thread.
pytestmark = pytest.mark.usefixtures("foreach_lion_one_thread")


def assignment(task: str, metric: str = "val_loss", **params) -> dict:
    """A trial assignment as the server sends it (Lion, foreach step)."""
    return {
        "trial_id": 1,
        "params": {"optimizer": "lion", "lr": 1e-3, "weight_decay": 0.1, "beta1": 0.9,
                   "beta2": 0.99},
        "task": {"name": task, "params": params},
        "objective": {"metric": metric, "direction": "minimize"},
        "budget": {"max_steps": None},
        "seed": 7,
    }  # fmt: skip


def test_builtins_are_registered_with_defaults():
    assert {"quadratic", "digits", "charlm", "planted"} <= set(tasks.names())
    for name in ("quadratic", "digits", "charlm", "planted"):
        task = tasks.get(name)
        assert isinstance(task, tasks.Task)
        assert task.defaults.announce() == {
            "warmup_steps": task.defaults.warmup_steps,
            "batch_size": task.defaults.batch_size,
        }


def test_unknown_task_and_unknown_param_are_refused():
    with pytest.raises(KeyError, match="not registered on this worker"):
        tasks.get("os.system")
    with pytest.raises(ValueError, match=r"unknown params \['dmodel'\].*d_model"):
        tasks.resolve_params(tasks.get("charlm"), {"dmodel": 128})


def test_register_rejects_objects_that_are_not_tasks():
    with pytest.raises(TypeError, match="is not a task"):
        tasks.register(object())

    class NoDefaults:
        name = "broken"
        defaults = {"steps": 3}
        data = make_model = batches = loss = evaluate = staticmethod(lambda *a: None)

    with pytest.raises(TypeError, match="TaskDefaults"):
        tasks.register(NoDefaults())
    assert "broken" not in tasks.names()


TINY_TASK = textwrap.dedent(
    """
    import torch
    from worker.tasks import TaskDefaults, register
    from worker.tasks.quadratic import Quadratic

    class {cls}(Quadratic):
        name = "{name}"
        defaults = TaskDefaults(steps=5, eval_every=5, params=dict(Quadratic.defaults.params))

    {tail}
    """
)


def test_task_module_registers_its_tasks(tmp_path, monkeypatch):
    (tmp_path / "my_tasks_mod.py").write_text(
        TINY_TASK.format(cls="Mine", name="mine_from_module", tail="register(Mine)")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    tasks.load_modules(["my_tasks_mod"])
    assert "mine_from_module" in tasks.names()
    result = run_trial(
        tasks.get("mine_from_module"),
        effective_config(tasks.get("mine_from_module"), assignment("mine_from_module"), "cpu"),
        NullReporter(),
    )
    assert result.state == "complete" and result.steps_done == 5


def test_entry_point_group_registers_tasks(tmp_path, monkeypatch):
    (tmp_path / "ep_tasks_mod.py").write_text(
        TINY_TASK.format(cls="FromEp", name="mine_from_entry_point", tail="")
    )
    dist = tmp_path / "ep_tasks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-tasks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[lionsweep.tasks]\nfrom_ep = ep_tasks_mod:FromEp\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "mine_from_entry_point" not in tasks.names()
    assert "from_ep" in tasks.load_entry_points()
    assert "mine_from_entry_point" in tasks.names()
    sys.modules.pop("ep_tasks_mod", None)


def test_quadratic_batches_are_deterministic_and_nan_at_step():
    task = tasks.get("quadratic")
    params = tasks.resolve_params(task, {"nan_at_step": 3})
    data = task.data(params, "cpu")

    def first(n, seed):
        it = task.batches(params, data, 8, torch.Generator().manual_seed(seed))
        return [next(it)[0] for _ in range(n)]

    a, b, c = first(3, 1), first(3, 1), first(3, 2)
    assert all(torch.equal(x, y) for x, y in zip(a[:2], b[:2], strict=True))
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (8, params["dim"])
    assert torch.isnan(a[2]).all() and not torch.isnan(a[1]).any()


def test_quadratic_trial_is_fast_and_converges():
    task = tasks.get("quadratic")
    config = effective_config(task, assignment("quadratic"), "cpu")
    model = task.make_model(config.task_params, task.data(config.task_params, "cpu"), "cpu")
    start = task.evaluate(model, config.task_params, None)["val_loss"]
    result = run_trial(task, config, NullReporter())
    assert result.state == "complete"
    assert result.value < start / 100
    assert result.steps_done == quadratic.Quadratic.defaults.steps


def test_digits_split_and_training_beats_its_start():
    data = digits._dataset()
    assert data["x_train"].shape == (1437, 64) and data["x_val"].shape == (360, 64)
    assert float(data["x_train"].max()) <= 1.0
    task = tasks.get("digits")
    config = effective_config(task, assignment("digits"), "cpu")
    torch.manual_seed(config.seed)
    model = task.make_model(config.task_params, task.data(config.task_params, "cpu"), "cpu")
    start = task.evaluate(model, config.task_params, task.data(config.task_params, "cpu"))
    reporter = NullReporter()
    result = run_trial(task, config, reporter)
    assert result.state == "complete"
    assert start["val_loss"] > 2.0
    assert result.value < 0.5 * start["val_loss"]
    assert result.metrics["accuracy"] > 0.9
    assert [s for s, _, _ in reporter.reports] == list(range(50, 401, 50))


def test_digits_cnn_trains():
    task = tasks.get("digits")
    a = assignment("digits", model="cnn", steps=150, eval_every=150)
    result = run_trial(task, effective_config(task, a, "cpu"), NullReporter())
    assert result.state == "complete" and result.value < 0.8


@pytest.mark.parametrize("d_model", [32, 128])
def test_charlm_weights_start_at_fan_in_to_the_minus_half_unless_init_std_is_given(d_model):
    task = tasks.get("charlm")
    params = tasks.resolve_params(task, {"d_model": d_model, "corpus_bytes": 200_000})
    data = task.data(params, "cpu")
    torch.manual_seed(0)
    model = task.make_model(params, data, "cpu")
    block = model.blocks[0]
    for weight, fan_in in [
        (model.tok.weight, d_model),
        (model.pos.weight, d_model),
        (block.qkv.weight, d_model),
        (block.mlp[2].weight, 4 * d_model),
        (model.head.weight, d_model),
    ]:
        assert float(weight.detach().std()) == pytest.approx(fan_in**-0.5, rel=0.1)
    assert not block.qkv.bias.detach().any() and bool((block.ln1.weight.detach() == 1).all())
    fixed = task.make_model({**params, "init_std": 0.02}, data, "cpu")
    assert float(fixed.blocks[0].mlp[2].weight.detach().std()) == pytest.approx(0.02, rel=0.1)


def test_charlm_corpus_is_stdlib_source_and_deterministic():
    corpus = charlm._corpus(200_000)
    assert len(corpus["train"]) + len(corpus["val"]) == 200_000
    text = "".join(corpus["vocab"][i] for i in corpus["train"][:2000].tolist())
    assert "def " in text or "import " in text
    files = charlm._stdlib_files()
    assert files == charlm._stdlib_files()
    assert not any("site-packages" in p.parts or "test" in p.parts for p in files)


@pytest.mark.slow
def test_charlm_default_size_trains_well_below_its_start():
    task = tasks.get("charlm")
    a = assignment("charlm", metric="val_bpc", steps=200, eval_every=200)
    config = effective_config(task, a, "cpu")
    data = task.data(config.task_params, "cpu")
    torch.manual_seed(config.seed)
    model = task.make_model(config.task_params, data, "cpu")
    start = task.evaluate(model, config.task_params, data)
    result = run_trial(task, config, NullReporter())
    assert result.state == "complete"
    assert start["val_bpc"] > 6.0  # ≈ log2(vocabulary) for an untrained model
    assert result.value < start["val_bpc"] - 1.5
    assert result.metrics["val_loss"] == pytest.approx(result.value * 0.6931471805599453)


def test_task_defaults_are_frozen():
    with pytest.raises(AttributeError):
        TaskDefaults().steps = 3  # type: ignore[misc]


BUILTINS = ("quadratic", "digits", "charlm", "planted")


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_declares_every_param_it_uses_within_finite_bounds(name):
    d = tasks.get(name).defaults
    specs = d.param_specs()
    assert specs is not None
    assert set(specs) == set(d.params) | set(tasks.LOOP_PARAMS)
    assert {k: specs[k].default for k in d.params} == d.params
    assert (specs["steps"].default, specs["eval_every"].default) == (d.steps, d.eval_every)
    assert specs["decay_all"].default is d.decay_all
    for param, spec in specs.items():
        assert spec.problem(spec.default) is None, param
        if spec.type in ("int", "float"):
            assert math.isfinite(spec.low) and math.isfinite(spec.high), param
        elif spec.type == "str":
            assert spec.choices, param
    # Each default passes the harness's check, and the resolved params are exactly these.
    config = effective_config(tasks.get(name), assignment(name, **d.params), "cpu")
    assert config.task_params == d.params


def test_declarations_are_announced_as_json_for_declaring_tasks_only():
    class Undeclared(quadratic.Quadratic):
        name = "undeclared_announce"
        defaults = TaskDefaults(params=dict(quadratic.Quadratic.defaults.params))

    tasks.register(Undeclared)
    try:
        announced = tasks.announce_params(["quadratic", "digits", "undeclared_announce"])
    finally:
        tasks._REGISTRY.pop("undeclared_announce")
    assert set(announced) == {"quadratic", "digits"}
    assert json.loads(json.dumps(announced)) == announced
    assert announced["quadratic"]["step_delay"] == {
        "type": "float", "low": 0.0, "high": 1.0, "choices": None, "default": 0.0,
    }  # fmt: skip
    assert announced["quadratic"]["steps"] == {
        "type": "int", "low": 1, "high": 10_000_000, "choices": None, "default": 1000,
        "role": "steps",
    }  # fmt: skip
    assert announced["quadratic"]["decay_all"] == {
        "type": "bool", "low": None, "high": None, "choices": None, "default": True,
    }  # fmt: skip
    assert announced["digits"]["decay_all"]["default"] is False
    assert announced["digits"]["model"]["choices"] == ["mlp", "cnn"]
    assert announced["quadratic"]["nan_at_step"]["default"] is None


def test_the_width_is_declared_once_and_announced_only_where_it_is():
    announced = tasks.announce_params(list(BUILTINS))
    widths = {
        task: [name for name, spec in params.items() if "width" in spec]
        for task, params in announced.items()
    }
    assert widths == {"quadratic": [], "digits": ["hidden"], "charlm": ["d_model"], "planted": []}
    assert announced["charlm"]["d_model"] == {
        "type": "int", "low": 8, "high": 2048, "choices": None, "default": 64, "width": True,
        "role": "width",
    }  # fmt: skip
    assert "width" not in ParamSpec("int", default=3).as_json()
    assert ParamSpec("float", default=1.0, width=True).as_json()["width"] is True
    with pytest.raises(ValueError, match="a width is a number, not str"):
        ParamSpec("str", default="a", width=True)
    with pytest.raises(ValueError, match=r"at most one param is the width, not \['a', 'b'\]"):
        TaskDefaults(
            specs={
                "a": ParamSpec("int", default=1, width=True),
                "b": ParamSpec("int", default=2, width=True),
            }
        )


def test_scale_roles_one_param_each_and_width_true_is_the_width_role():
    announced = tasks.announce_params(list(BUILTINS))
    roles = {
        task: {spec["role"]: name for name, spec in params.items() if "role" in spec}
        for task, params in announced.items()
    }
    assert roles == {
        "quadratic": {"steps": "steps"},
        "digits": {"width": "hidden", "steps": "steps"},
        "charlm": {"width": "d_model", "steps": "steps"},
        "planted": {"steps": "steps"},
    }
    assert ParamSpec("int", default=3, role="width").as_json()["width"] is True
    assert ParamSpec("int", default=3, width=True).role == "width"
    tokens = ParamSpec("int", default=3, role="steps")
    assert tokens.as_json()["role"] == "steps" and "width" not in tokens.as_json()
    with pytest.raises(ValueError, match="width=True is the width role, not 'batch'"):
        ParamSpec("int", default=3, role="batch", width=True)
    with pytest.raises(ValueError, match="role must be one of width, steps, batch, not 'depth'"):
        ParamSpec("int", default=3, role="depth")
    with pytest.raises(ValueError, match="a batch is a number, not bool"):
        ParamSpec("bool", default=False, role="batch")
    with pytest.raises(
        ValueError, match=r"at most one param is the steps, not \['epochs', 'steps'\]"
    ):
        TaskDefaults(specs={"epochs": ParamSpec("int", default=1, role="steps")})
    declared = TaskDefaults(specs={"bs": ParamSpec("int", default=8, role="batch")})
    assert declared.param_specs()["bs"].role == "batch"


def test_param_spec_rules_never_coerce():
    count = ParamSpec("int", default=3, low=1, high=10)
    assert count.problem(10) is None and count.problem(3) is None
    assert count.problem(True) == "must be int, not bool True"
    assert count.problem("3") == "must be int, not str '3'"
    assert count.problem(3.0) == "must be int, not float 3.0"
    assert count.problem(None) == "must be int, not null"
    assert count.problem(11) == "must be at most 10, not 11"
    scale = ParamSpec("float", default=0.5, low=0.0, high=1.0)
    assert scale.problem(1) is None  # an int is a float
    assert scale.problem(float("nan")) == "must be finite, not nan"
    assert scale.problem(float("-inf")) == "must be finite, not -inf"
    assert scale.problem(False) == "must be float, not bool False"
    flag = ParamSpec("bool", default=False)
    assert flag.problem(True) is None and flag.problem(0) == "must be bool, not int 0"
    optional = ParamSpec("int", default=None, low=1)
    assert optional.problem(None) is None and optional.problem(0) == "must be at least 1, not 0"
    kind = ParamSpec("str", default="a", choices=["a", "b"])
    assert kind.choices == ("a", "b") and kind.problem("c") == "must be one of 'a', 'b', not 'c'"


def test_bad_declarations_are_refused_when_written():
    with pytest.raises(ValueError, match="param type"):
        ParamSpec("list", default=[])
    with pytest.raises(ValueError, match="above high"):
        ParamSpec("int", default=1, low=5, high=2)
    with pytest.raises(ValueError, match="default 0: must be at least 1"):
        ParamSpec("int", default=0, low=1)
    with pytest.raises(ValueError, match="low/high bound numbers"):
        ParamSpec("str", default="a", low=1)
    with pytest.raises(ValueError, match="not a finite float"):
        ParamSpec("float", default=0.0, high=math.inf)
    with pytest.raises(ValueError, match=r"disagree on \['b'\]"):
        TaskDefaults(params={"a": 1, "b": 2}, specs={"a": ParamSpec("int", default=1)})
    with pytest.raises(ValueError, match=r"disagree on \['a'\]"):
        TaskDefaults(params={"a": 2}, specs={"a": ParamSpec("int", default=1)})
    with pytest.raises(ValueError, match="steps spec's default"):
        TaskDefaults(steps=5, specs={"steps": ParamSpec("int", default=6, low=1, high=9)})
