"""Width ladders as sweep specs (pure, no database): a ladder spec checked against its task's
declared params and turned into one sweep spec per width (its rungs), and a prediction turned
into a confirmation sweep's spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service import schemas
from service import spec as specs
from service.errors import Invalid, field_error
from service.ladder_fit import RULES
from service.settings import Settings


@dataclass
class Untransferred:
    """The widest rung's own recommendation, used unmoved at a confirmation's width."""

    lr: float
    weight_decay: float
    params: dict[str, Any]
    """Its best config's params (betas, warmup, batch size come from here)."""
    source: str
    wd_source: str


def _scaled(dim: schemas.Dimension | None, f: float) -> schemas.Dimension | None:
    """A dimension with every value multiplied by ``f`` (> 0)."""
    if dim is None or f == 1.0:
        return dim
    if dim.value is not None:
        return dim.model_copy(update={"value": dim.value * f})
    if dim.choices is not None:
        return dim.model_copy(update={"choices": [c * f for c in dim.choices]})
    step = dim.step * f if dim.step is not None else None
    return dim.model_copy(update={"low": dim.low * f, "high": dim.high * f, "step": step})


def rung_spec(spec: schemas.LadderSpec, width: float) -> schemas.SweepSpec:
    """The sweep spec of the rung at ``width``: the ladder's spec with the width set in the
    task params and, unless the box is shared, lr and weight decay moved by the box's rule
    from the smallest width."""
    lad = spec.ladder
    data = spec.model_dump(exclude={"ladder"}, exclude_none=True)
    data["name"] = f"{spec.name} · {lad.param}={width:g}"
    data["task"]["params"] = {**spec.task.params, lad.param: width}
    out = schemas.SweepSpec.model_validate(data)
    if lad.scale_box == "shared":
        return out
    a, b = RULES[lad.scale_box]
    r = width / min(lad.widths)
    fa, fb = r**a, r**b
    space = out.space.model_copy(
        update={
            "lr": _scaled(out.space.lr, fa),
            "weight_decay": _scaled(out.space.weight_decay, fb),
            "lr_wd_product": _scaled(out.space.lr_wd_product, fa * fb),
        }
    )
    enqueue = []
    for cfg in specs.enqueued_params(out):
        for name, f in (("lr", fa), ("weight_decay", fb), ("lr_wd_product", fa * fb)):
            if name in cfg:
                cfg[name] = cfg[name] * f
        enqueue.append(schemas.EnqueuedConfig.model_validate(cfg))
    return out.model_copy(update={"space": space, "enqueue": enqueue})


def width_problem(value: Any, rule: dict[str, Any]) -> str | None:
    """Why ``value`` breaks the declared width param's type or bounds, or None (a float
    width that is a whole number counts as the int it names)."""
    if rule.get("type") == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)
    return specs.param_problem(value, rule)


def check_ladder(
    spec: schemas.LadderSpec, declared: dict[str, dict[str, Any]] | None, settings: Settings
) -> list[schemas.SweepSpec]:
    """Every rung's spec, or a 422 naming the field and the rule; ``declared`` is the task's
    declared params (None: no worker has announced the task)."""
    lad = spec.ladder
    if declared is None:
        raise Invalid(
            [
                field_error(
                    ("ladder", "param"),
                    f"no worker has announced task {spec.task.name!r}, so which param is "
                    "its width is unknown: start a worker that runs it, then submit",
                    lad.param,
                )
            ]
        )
    widths = [n for n, r in declared.items() if isinstance(r, dict) and r.get("width")]
    rule = declared.get(lad.param)
    if not isinstance(rule, dict) or not rule.get("width"):
        known = f"its width param is {widths[0]!r}" if widths else "it declares none"
        raise Invalid(
            [
                field_error(
                    ("ladder", "param"),
                    f"task {spec.task.name!r} does not declare {lad.param!r} as its width "
                    f"({known})",
                    lad.param,
                )
            ]
        )
    errors = []
    if lad.param in spec.task.params:
        errors.append(
            field_error(
                ("task", "params", lad.param),
                f"{lad.param} is set per rung by ladder.widths: leave it out of task.params",
            )
        )
    for i, w in enumerate(lad.widths):
        problem = width_problem(w, rule)
        if problem:
            errors.append(field_error(("ladder", "widths", i), f"{lad.param} {problem}", w))
    if errors:
        raise Invalid(errors)
    rungs = [rung_spec(spec, w) for w in lad.widths]
    for rung in rungs:
        errors = specs.check_spec(rung, settings)
        errors += specs.check_task_params(rung.task.params, declared)
        if errors:
            raise Invalid(errors)
    return rungs


def confirm_spec(
    spec: schemas.LadderSpec,
    param: str,
    width: float,
    seeds: int,
    prediction: schemas.LadderPrediction,
    largest: Untransferred,
) -> schemas.SweepSpec:
    """Two arms at ``width``, ``seeds`` runs each: the predicted lr and weight decay, and
    the widest rung's own optimum as it is; every other hyperparameter is that rung's
    best config's."""
    base = largest.params
    arms = [
        {"lr": prediction.lr, "weight_decay": prediction.weight_decay},
        {"lr": largest.lr, "weight_decay": largest.weight_decay},
    ]
    space: dict[str, Any] = {}
    for name in ("lr", "weight_decay"):
        values = sorted({a[name] for a in arms})
        space[name] = values[0] if len(values) == 1 else {"choices": values}
    for name in ("beta1", "beta2", "warmup_steps", "batch_size"):
        if base.get(name) is not None:
            space[name] = base[name]
    data = spec.model_dump(exclude={"ladder"}, exclude_none=True)
    data.update(
        name=f"{spec.name} · confirm {param}={width:g}",
        space=space,
        # no fixed sampler seed: the training seeds come from the new sweep's id, so every
        # confirmation draws fresh ones (every arm's trials are enqueued: nothing is sampled)
        sampler={"name": "random"},
        pruner={"name": "none"},
        n_trials=2 * seeds,
        enqueue=[arms[k % 2] for k in range(2 * seeds)],
        reevaluate="off",
        baseline=None,
    )
    data["task"]["params"] = {**spec.task.params, param: width}
    return schemas.SweepSpec.model_validate(data)
