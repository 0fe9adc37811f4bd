"""Width ladders as sweep specs (pure, no database): a ladder spec checked against its task's
declared params and turned into one sweep spec per width (its rungs), and a prediction turned
into a confirmation sweep's spec."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

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


def axis_with(roles: dict[str, str], role: str) -> str | None:
    """The axis that has ``role`` among ``roles`` (axis → role), or None."""
    return next((axis for axis, r in roles.items() if r == role), None)


def point_name(point: dict[str, float]) -> str:
    """``d_model=64, steps=200``: a rung's point as text."""
    return ", ".join(f"{k}={v:g}" for k, v in point.items())


def point_text(point: dict[str, float]) -> str:
    """A point in a sentence: ``width 1024`` for one axis, ``d_model=64, steps=200``."""
    if len(point) == 1:
        [(k, v)] = point.items()
        return f"{k} {v:g}"
    return point_name(point)


def set_point(data: dict[str, Any], point: dict[str, float], roles: dict[str, str]) -> None:
    """Write ``point`` into a sweep spec's JSON ``data``: task params, and the harness's batch
    size (``batch_size`` with the batch role and no task param of that name) into the space."""
    params = dict(data["task"].get("params") or {})
    for name, value in point.items():
        if name == schemas.BATCH_AXIS and roles.get(name) == "batch" and name not in params:
            data.setdefault("space", {})[name] = int(value)
        else:
            params[name] = value
    data["task"]["params"] = params


def rung_spec(
    spec: schemas.LadderSpec, point: dict[str, float], roles: dict[str, str]
) -> schemas.SweepSpec:
    """The sweep spec of the rung at ``point``: the ladder's spec with each axis's value set
    and, unless the box is shared, lr and weight decay moved by the box's rule from the
    smallest width."""
    lad = spec.ladder
    data = spec.model_dump(exclude={"ladder"}, exclude_none=True)
    data["name"] = f"{spec.name} · {point_name(point)}"
    set_point(data, point, roles)
    out = schemas.SweepSpec.model_validate(data)
    width_axis = axis_with(roles, "width")
    if lad.scale_box == "shared" or width_axis is None:
        return out
    a, b = RULES[lad.scale_box]
    r = point[width_axis] / min(p[width_axis] for p in lad.points())
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
    """Why ``value`` breaks the declared axis param's type or bounds, or None (a float that is
    a whole number counts as the int it names)."""
    if rule.get("type") == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)
    return specs.param_problem(value, rule)


def axis_roles(
    spec: schemas.LadderSpec, declared: dict[str, dict[str, Any]]
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Each axis's role from the task's declarations (``batch_size``: the harness's batch
    size, unless the task declares a batch param of its own), and the 422 errors."""
    lad = spec.ladder
    shorthand = lad.rungs is None
    loc_axes = ("ladder", "param") if shorthand else ("ladder", "rungs", 0)
    roles: dict[str, str] = {}
    errors = []
    by_role = {
        specs.declared_role(r): n
        for n, r in declared.items()
        if isinstance(r, dict) and specs.declared_role(r)
    }
    for name in lad.axes():
        rule = declared.get(name)
        role = specs.declared_role(rule) if isinstance(rule, dict) else None
        loc = loc_axes if shorthand else (*loc_axes, name)
        if shorthand and role != "width":
            known = (
                f"its width param is {by_role['width']!r}"
                if "width" in by_role
                else ("it declares none")
            )
            errors.append(
                field_error(
                    loc,
                    f"task {spec.task.name!r} does not declare {name!r} as its width ({known})",
                    name,
                )
            )
            continue
        if role is None and name == schemas.BATCH_AXIS and rule is None:
            if "batch" in by_role:
                errors.append(
                    field_error(
                        loc,
                        f"task {spec.task.name!r} declares {by_role['batch']!r} as its batch "
                        f"param: vary that, not {name}",
                        name,
                    )
                )
                continue
            role = "batch"
        if role is None:
            axes = ", ".join(f"{n} ({r})" for r, n in sorted(by_role.items())) or "none"
            what = "declares it without a role" if rule is not None else "does not declare it"
            errors.append(
                field_error(
                    loc,
                    f"{name!r} is not a scale axis of task {spec.task.name!r} ({what}); its "
                    f"axes: {axes}, or batch_size",
                    name,
                )
            )
            continue
        clash = next((a for a, r in roles.items() if r == role), None)
        if clash is not None:
            errors.append(
                field_error(loc, f"{clash!r} and {name!r} are both the {role}: one axis per role")
            )
            continue
        roles[name] = role
    if not errors and lad.roles is not None and lad.roles != roles:
        errors.append(
            field_error(
                ("ladder", "roles"),
                f"the task declares the axes' roles as {roles}, not {lad.roles}",
                lad.roles,
            )
        )
    if not errors and lad.scale_box != "shared" and "width" not in roles.values():
        errors.append(
            field_error(
                ("ladder", "scale_box"),
                f"scale_box {lad.scale_box!r} moves the box with width: the ladder has no width "
                "axis (use shared)",
                lad.scale_box,
            )
        )
    return roles, errors


def check_ladder(
    spec: schemas.LadderSpec, declared: dict[str, dict[str, Any]] | None, settings: Settings
) -> tuple[schemas.LadderSpec, list[schemas.SweepSpec]]:
    """The spec with its axes' roles filled in and every rung's spec, or a 422 naming the
    field and the rule; ``declared`` is the task's declared params (None: no worker has
    announced the task)."""
    lad = spec.ladder
    if declared is None:
        raise Invalid(
            [
                field_error(
                    ("ladder", "param" if lad.rungs is None else "rungs"),
                    f"no worker has announced task {spec.task.name!r}, so its scale axes "
                    "(which param is its width, steps, batch) are unknown: start a worker "
                    "that runs it, then submit",
                    lad.param if lad.rungs is None else lad.axes(),
                )
            ]
        )
    roles, errors = axis_roles(spec, declared)
    if errors:
        raise Invalid(errors)
    for name in roles:
        set_by = "ladder.widths" if lad.rungs is None else "ladder.rungs"
        if name in spec.task.params:
            errors.append(
                field_error(
                    ("task", "params", name),
                    f"{name} is set per rung by {set_by}: leave it out of task.params",
                )
            )
        elif name == schemas.BATCH_AXIS and name not in declared and spec.space.batch_size:
            errors.append(
                field_error(
                    ("space", name),
                    f"{name} is set per rung by {set_by}: leave it out of the space",
                )
            )
    for i, point in enumerate(lad.points()):
        for name, value in point.items():
            loc = ("ladder", "widths", i) if lad.rungs is None else ("ladder", "rungs", i, name)
            problem = _axis_value_problem(value, declared.get(name))
            if problem:
                errors.append(field_error(loc, f"{name} {problem}", value))
    errors += _follow_problems(lad, declared)
    if errors:
        raise Invalid(errors)

    def whole(name: str, value: float) -> float:
        rule = declared.get(name)
        is_int = rule.get("type") == "int" if isinstance(rule, dict) else True
        return int(value) if is_int and float(value).is_integer() else value

    update: dict[str, Any] = {"roles": roles}
    if lad.rungs is None:
        update["widths"] = [whole(lad.param, w) for w in lad.widths]
    else:
        update["rungs"] = [{k: whole(k, v) for k, v in r.items()} for r in lad.rungs]
    if lad.follow is not None:
        follow = [{k: whole(k, v) for k, v in r.items()} for r in lad.follow.rungs]
        update["follow"] = lad.follow.model_copy(update={"rungs": follow})
    lad = lad.model_copy(update=update)
    spec = spec.model_copy(update={"ladder": lad})
    rungs = [rung_spec(spec, p, roles) for p in lad.points()]
    # a follow rung is checked now in the ladder's box, so its release cannot be refused later
    later = [rung_spec(extended_spec(spec, lad.pending()), p, roles) for p in lad.pending()]
    for rung in rungs + later:
        errors = specs.check_spec(rung, settings)
        errors += specs.check_task_params(rung.task.params, declared)
        if errors:
            raise Invalid(errors)
    return spec, rungs


def _axis_value_problem(value: float, rule: Any) -> str | None:
    """What is wrong with an axis's value against its declaration (``rule``; none declared, as
    for the batch size, means a whole number), or None."""
    if isinstance(rule, dict):
        return width_problem(value, rule)
    if float(value).is_integer():
        return None
    return f"must be a whole number of examples, not {value!r}"


def _follow_problems(
    lad: schemas.LadderDef, declared: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The 422 errors of a ladder's follow rungs: a value that breaks its axis's declaration,
    or ``released`` given at submission (the server fills it in)."""
    if lad.follow is None:
        return []
    errors = []
    if lad.follow.released:
        errors.append(
            field_error(
                ("ladder", "follow", "released"),
                "released is filled in by the server as it adds follow rungs: leave it out",
            )
        )
    for i, point in enumerate(lad.follow.rungs):
        for name, value in point.items():
            problem = _axis_value_problem(value, declared.get(name))
            if problem:
                loc = ("ladder", "follow", "rungs", i, name)
                errors.append(field_error(loc, f"{name} {problem}", value))
    return errors


def confirm_spec(
    spec: schemas.LadderSpec,
    point: dict[str, float],
    seeds: int,
    prediction: schemas.LadderPrediction,
    untransferred: Untransferred,
    extra: list[tuple[float, float]] = (),
) -> schemas.SweepSpec:
    """The arms at ``point``, ``seeds`` runs each: the predicted lr and weight decay, a rung's
    own optimum as it is (the widest of a width ladder, else the nearest), then ``extra``
    (lr, weight decay) arms; every other hyperparameter is that rung's best config's."""
    base = untransferred.params
    arms = [
        {"lr": prediction.lr, "weight_decay": prediction.weight_decay},
        {"lr": untransferred.lr, "weight_decay": untransferred.weight_decay},
        *({"lr": lr, "weight_decay": wd} for lr, wd in extra),
    ]
    roles = spec.ladder.roles or {spec.ladder.axes()[0]: "width"}
    space: dict[str, Any] = {}
    for name in ("lr", "weight_decay"):
        values = sorted({a[name] for a in arms})
        space[name] = values[0] if len(values) == 1 else {"choices": values}
    for name in ("beta1", "beta2", "warmup_steps", "batch_size"):
        if base.get(name) is not None and name not in point:
            space[name] = base[name]
    data = spec.model_dump(exclude={"ladder"}, exclude_none=True)
    data.update(
        name=f"{spec.name} · confirm {point_name(point)}",
        space=space,
        # no fixed sampler seed: the training seeds come from the new sweep's id, so every
        # confirmation draws fresh ones (every arm's trials are enqueued: nothing is sampled)
        sampler={"name": "random"},
        pruner={"name": "none"},
        n_trials=len(arms) * seeds,
        enqueue=[arms[k % len(arms)] for k in range(len(arms) * seeds)],
        reevaluate="off",
        baseline=None,
    )
    set_point(data, point, roles)
    return schemas.SweepSpec.model_validate(data)


def target_spec(
    spec: schemas.LadderSpec,
    point: dict[str, float],
    prediction: schemas.LadderPrediction,
    trials: int,
    seeds: int,
) -> schemas.SweepSpec:
    """The small sweep a confirmation runs at ``point`` itself: the rung spec there with its
    box centred on the prediction (:func:`fit_box`, :data:`schemas.TARGET_SPAN` each way),
    ``trials`` trials, and its top 3 configs re-run with ``seeds`` fresh seeds, so its best
    is valued on runs that did not select it."""
    roles = spec.ladder.roles or {spec.ladder.axes()[0]: "width"}
    box = fit_box(rung_spec(spec, point, roles), prediction, schemas.TARGET_SPAN)
    data = box.model_dump(exclude_none=True)
    data.update(
        name=f"{spec.name} · target sweep {point_name(point)}",
        n_trials=trials,
        reevaluate={"top_k": 3, "seeds": seeds},
        baseline=None,
    )
    return schemas.SweepSpec.model_validate(data)


def fit_box(
    rung: schemas.SweepSpec, prediction: schemas.LadderPrediction, span: float
) -> schemas.SweepSpec:
    """``rung`` with its lr range centred on the prediction (÷ ``span`` to × ``span``, or as
    far as it takes to hold the prediction's 90% interval) and, where the prediction moves the
    weight decay, its weight decay (or lr × weight decay) range too, as wide as the weight
    decay's interval: where the data leave λ open the box searches all of it; enqueued configs
    are dropped (they were placed for the old box)."""
    lr_spread = box_spread(prediction.lr, prediction.lr_ci, span)
    lr = schemas.Dimension(low=prediction.lr / lr_spread, high=prediction.lr * lr_spread, log=True)
    update: dict[str, Any] = {"lr": lr}
    if prediction.weight_decay_moved and prediction.weight_decay > 0:
        wd = prediction.weight_decay
        spread = box_spread(wd, prediction.weight_decay_ci, span)
        if rung.space.lr_wd_product is not None:
            product = prediction.lr * wd
            update["lr_wd_product"] = schemas.Dimension(
                low=product / spread, high=product * spread, log=True
            )
        else:
            update["weight_decay"] = schemas.Dimension(low=wd / spread, high=wd * spread, log=True)
    return rung.model_copy(update={"space": rung.space.model_copy(update=update), "enqueue": []})


BOX_SPREAD_MAX = 100.0
"""The furthest a box centred on a prediction reaches each way because of its interval."""


def box_spread(centre: float, interval: list[float] | None, span: float) -> float:
    """The factor a box reaches each way from ``centre``: ``span``, or more where the 90%
    ``interval`` reaches further on either side."""
    spread = span
    if interval is not None and interval[0] > 0 and interval[1] > 0:
        spread = max(spread, centre / interval[0], interval[1] / centre)
    return min(spread, max(span, BOX_SPREAD_MAX))


def extended_spec(spec: schemas.LadderSpec, points: list[dict[str, float]]) -> schemas.LadderSpec:
    """The ladder's spec with ``points`` added to its rungs (a one-axis shorthand becomes
    ``rungs`` with its width role) and taken off its pending follow rungs."""
    lad = spec.ladder
    roles = lad.roles or {lad.axes()[0]: "width"}
    update: dict[str, Any] = {
        "param": None,
        "widths": None,
        "rungs": [dict(p) for p in lad.points()] + [dict(p) for p in points],
        "roles": roles,
    }
    if lad.follow is not None:
        keys = {_key(p) for p in points}
        pending = [r for r in lad.follow.rungs if _key(r) not in keys]
        update["follow"] = lad.follow.model_copy(update={"rungs": pending})
    ladder = lad.model_copy(update=update)
    return spec.model_copy(update={"ladder": schemas.LadderDef.model_validate(ladder.model_dump())})


def followed_spec(
    spec: schemas.LadderSpec,
    points: list[dict[str, float]],
    released: list[schemas.FollowedRung],
) -> schemas.LadderSpec:
    """The ladder's spec with its pending follow rungs ``points`` added to its rungs, taken off
    the pending list and recorded in ``follow.released``."""
    out = extended_spec(spec, points)
    follow = out.ladder.follow
    follow = follow.model_copy(update={"released": [*follow.released, *released]})
    return out.model_copy(update={"ladder": out.ladder.model_copy(update={"follow": follow})})


def _key(point: dict[str, float]) -> tuple[tuple[str, float], ...]:
    """A point as a hashable key (axis order and int / float aside)."""
    return tuple(sorted((k, float(v)) for k, v in point.items()))


def adopted_spec(
    req: schemas.LadderFromSweeps, specs_json: list[dict[str, Any]]
) -> schemas.LadderSpec:
    """The spec of a ladder made of existing sweeps (their stored specs, in ``req.sweeps``'
    order): the first sweep's spec without the axes, and ``rungs`` read from each sweep's task
    params (``batch_size``: its fixed batch size); a 422 naming the sweep and the axis when one
    is missing, of another task, or the rungs break the ladder's rules."""
    errors, points = [], []
    task = specs_json[0]["task"]["name"]
    for i, data in enumerate(specs_json):
        if data["task"]["name"] != task:
            errors.append(
                field_error(
                    ("sweeps", i),
                    f"sweep {req.sweeps[i]} runs task {data['task']['name']!r}, sweep "
                    f"{req.sweeps[0]} {task!r}: a ladder's rungs share one task",
                    req.sweeps[i],
                )
            )
            continue
        params = data["task"].get("params") or {}
        point = {}
        for name, role in req.axes.items():
            value = params.get(name)
            if value is None and name == schemas.BATCH_AXIS and role == "batch":
                value = (data.get("space", {}).get(name) or {}).get("value")
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value <= 0:
                where = "task params" if name != schemas.BATCH_AXIS else "task params or space"
                errors.append(
                    field_error(
                        ("sweeps", i),
                        f"sweep {req.sweeps[i]} has no positive number {name} in its {where}",
                        req.sweeps[i],
                    )
                )
                continue
            point[name] = int(value) if float(value).is_integer() else value
        points.append(point)
    if errors:
        raise Invalid(errors)
    base = copy.deepcopy(specs_json[0])
    for name in req.axes:
        base["task"].setdefault("params", {}).pop(name, None)
        if name == schemas.BATCH_AXIS:
            base.get("space", {}).pop(name, None)
    base["name"] = req.name
    base["ladder"] = {"rungs": points, "roles": dict(req.axes)}
    try:
        return schemas.LadderSpec.model_validate(base)
    except ValidationError as exc:
        raise Invalid(
            [
                field_error(("sweeps",), f"{'.'.join(map(str, e['loc']))}: {e['msg']}", req.sweeps)
                for e in exc.errors()
            ]
        ) from None
