"""A sweep spec turned into Optuna objects: distributions, fixed values, samplers, pruners,
the grid, seeds and enqueued configs, and the cross-field checks. Pure: no database."""

from __future__ import annotations

import math
import zlib
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from service import schemas
from service.errors import field_error
from service.settings import Settings

GRID_POINTS_CAP = 100_000
"""The most points a grid sweep may have (the grid sampler holds them all in memory)."""


def _as_param(name: str, v: float) -> float | int:
    return int(v) if name in schemas.INT_PARAMS else v


def distributions(spec: schemas.SweepSpec) -> dict[str, BaseDistribution]:
    """The Optuna distributions of the swept parameters (fixed values are not Optuna params)."""
    out: dict[str, BaseDistribution] = {}
    if spec.baseline == "adamw":
        out["optimizer"] = CategoricalDistribution(["lion", "adamw"])
    for name, dim in spec.space.dimensions().items():
        if dim.is_fixed:
            continue
        if dim.choices is not None:
            out[name] = CategoricalDistribution([_as_param(name, c) for c in dim.choices])
        elif name in schemas.INT_PARAMS:
            out[name] = IntDistribution(
                int(dim.low), int(dim.high), log=dim.log, step=int(dim.step or 1)
            )
        else:
            out[name] = FloatDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
    return out


def fixed_params(spec: schemas.SweepSpec) -> dict[str, Any]:
    """Parameters with one fixed value (and ``optimizer`` when there is no baseline arm)."""
    out: dict[str, Any] = {} if spec.baseline else {"optimizer": "lion"}
    for name, dim in spec.space.dimensions().items():
        if dim.is_fixed:
            out[name] = _as_param(name, dim.value)
    return out


def _grid_values(name: str, dim: schemas.Dimension) -> list[Any]:
    if dim.choices is not None:
        return [_as_param(name, c) for c in dim.choices]
    return [_as_param(name, round(dim.low + i * dim.step, 12)) for i in range(dim.n_points())]


def grid_size(spec: schemas.SweepSpec) -> int:
    """How many points the grid of a grid sweep has (counted, not enumerated)."""
    size = 2 if spec.baseline else 1
    for dim in spec.space.dimensions().values():
        size *= dim.n_points()
    return size


def grid_space(spec: schemas.SweepSpec) -> dict[str, list[Any]]:
    """The grid of a grid sweep: each swept parameter's values."""
    grid = {"optimizer": ["lion", "adamw"]} if spec.baseline else {}
    for name, dim in spec.space.dimensions().items():
        if not dim.is_fixed:
            grid[name] = _grid_values(name, dim)
    return grid


def sweep_seed(spec: schemas.SweepSpec, sweep_id: int) -> int:
    """The sweep's seed: the spec's, else the sweep id."""
    return spec.sampler.seed if spec.sampler.seed is not None else sweep_id


def trial_seed(spec: schemas.SweepSpec, sweep_id: int, number: int) -> int:
    """A per-trial seed: the same for the same sweep seed and trial number in any process."""
    return zlib.crc32(f"{sweep_seed(spec, sweep_id)}:{number}".encode()) & 0x7FFFFFFF


def shared_sampler(spec: schemas.SweepSpec, sweep_id: int) -> optuna.samplers.BaseSampler | None:
    """The one sampler all of a sweep's trials use, for samplers that must share one.

    The grid sampler shuffles its grid once and gives trial ``n`` the ``n``-th point, so
    every trial must see the same shuffle (sweep seed); it is built once per sweep since
    building it enumerates the grid.
    """
    if spec.sampler.name == "grid":
        return optuna.samplers.GridSampler(grid_space(spec), seed=sweep_seed(spec, sweep_id))
    return None


def build_sampler(
    spec: schemas.SweepSpec, sweep_id: int, number: int
) -> optuna.samplers.BaseSampler:
    """The sampler for one trial, seeded from (sweep seed, trial number)."""
    name = spec.sampler.name
    seed = trial_seed(spec, sweep_id, number)
    shared = shared_sampler(spec, sweep_id)
    if shared is not None:
        return shared
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(
            seed=sweep_seed(spec, sweep_id), warn_independent_sampling=False
        )
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}")


REDUCTION_FACTOR = 3
"""The default reduction factor of successive halving and Hyperband alike."""


def build_pruner(spec: schemas.SweepSpec, first_report_step: int) -> optuna.pruners.BasePruner:
    """The pruner named by the spec; every resource is counted in training steps.

    Reports carry the training step, so rungs are steps too: by default the first rung is
    the first report (``first_report_step``: the task's report interval) and the last is the
    trial's step budget, with the same reduction factor for successive halving and Hyperband.
    """
    p = spec.pruner
    if p.name == "none":
        return optuna.pruners.NopPruner()
    if p.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=5 if p.n_startup_trials is None else p.n_startup_trials,
            n_warmup_steps=p.n_warmup_steps or 0,
        )
    min_resource = p.min_resource or max(1, first_report_step)
    reduction = p.reduction_factor or REDUCTION_FACTOR
    if p.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=min_resource, reduction_factor=reduction
        )
    max_resource = p.max_resource or spec.budget.max_steps or "auto"
    return optuna.pruners.HyperbandPruner(
        min_resource=min_resource, max_resource=max_resource, reduction_factor=reduction
    )


def enqueued_params(spec: schemas.SweepSpec) -> list[dict[str, Any]]:
    """The spec's ``enqueue`` entries as plain parameter dicts (AdamW configs converted)."""
    out = []
    for cfg in spec.enqueue:
        params = cfg.model_dump(exclude_none=True, exclude={"from_adamw"})
        if cfg.from_adamw is not None:
            from optim.scaling import from_adamw

            a = cfg.from_adamw
            params["lr"], params["weight_decay"] = from_adamw(a.lr, a.weight_decay, factor=a.factor)
        if spec.baseline and "optimizer" not in params:
            params["optimizer"] = "lion"
        if spec.space.lr_wd_product is not None and "weight_decay" in params and "lr" in params:
            params["lr_wd_product"] = params["lr"] * params.pop("weight_decay")
        out.append(params)
    return out


def check_spec(spec: schemas.SweepSpec, settings: Settings) -> list[dict[str, Any]]:
    """Cross-field rules pydantic cannot see; returns FastAPI-shaped errors (empty if fine)."""
    errors: list[dict[str, Any]] = []
    if spec.n_trials > settings.max_trials_cap:
        errors.append(
            field_error(
                ("n_trials",),
                f"n_trials must be <= {settings.max_trials_cap} (the server's cap)",
                spec.n_trials,
            )
        )
    dims = spec.space.dimensions()
    if spec.sampler.name == "grid":
        for name, dim in dims.items():
            if dim.is_continuous:
                errors.append(
                    field_error(
                        ("space", name),
                        "the grid sampler cannot search a continuous range: "
                        "give choices or a range with a step",
                    )
                )
        if not errors:
            size = grid_size(spec)
            if size > GRID_POINTS_CAP:
                errors.append(
                    field_error(
                        ("space",),
                        f"the grid has {size} points; a grid sweep may have at most "
                        f"{GRID_POINTS_CAP}",
                    )
                )
            elif spec.n_trials > size:
                errors.append(
                    field_error(
                        ("n_trials",),
                        f"n_trials must be <= the grid's {size} points",
                        spec.n_trials,
                    )
                )
    if spec.sampler.name == "grid" and spec.enqueue:
        errors.append(
            field_error(
                ("enqueue",),
                "the grid sampler runs every grid point once; enqueued configs would run "
                "twice and push as many grid points out of n_trials: leave enqueue empty",
            )
        )
    if len(spec.enqueue) > spec.n_trials:
        errors.append(field_error(("enqueue",), "more enqueued configs than n_trials"))
    for i, cfg in enumerate(spec.enqueue):
        if cfg.optimizer == "adamw" and spec.baseline != "adamw":
            errors.append(
                field_error(("enqueue", i, "optimizer"), "optimizer 'adamw' needs baseline: adamw")
            )
    if spec.space.lr_wd_product is not None:
        for i, cfg in enumerate(spec.enqueue):
            gives_wd = cfg.weight_decay is not None or cfg.from_adamw is not None
            if gives_wd and cfg.lr is None and cfg.from_adamw is None:
                errors.append(
                    field_error(
                        ("enqueue", i, "weight_decay"),
                        "this sweep searches lr_wd_product: an enqueued weight_decay needs its "
                        "lr (the product is lr * weight_decay)",
                        cfg.weight_decay,
                    )
                )
    if errors:
        return errors
    for i, params in enumerate(enqueued_params(spec)):
        for name, v in params.items():
            dim = dims.get(name)
            if dim is None:
                if name in schemas.PARAMS:
                    errors.append(
                        field_error(("enqueue", i, name), f"{name} is not swept in this sweep", v)
                    )
                continue
            if dim.is_fixed:
                ok = math.isclose(v, dim.value)
                rule = f"must equal the fixed value {dim.value}"
            elif dim.choices is not None:
                ok = any(math.isclose(v, c) for c in dim.choices)
                rule = f"must be one of {dim.choices}"
            else:
                ok = dim.low * (1 - 1e-12) <= v <= dim.high * (1 + 1e-12)
                rule = f"must be within [{dim.low}, {dim.high}]"
            if not ok:
                errors.append(field_error(("enqueue", i, name), f"{name}={v:g} {rule}", v))
    return errors


def check_task_params(
    params: dict[str, Any], declared: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Check a sweep's task params against what workers declared for the task (422 shape).

    A declaration maps each accepted param to ``{"type": int|float|bool|str, "low", "high",
    "choices"}``; an undeclared param, a value of the wrong type (no coercion: a bool is not an
    int, "3" is not 3) or one out of bounds is an error.
    """
    errors = []
    for name, value in params.items():
        loc = ("task", "params", name)
        rule = declared.get(name)
        if rule is None:
            known = ", ".join(sorted(declared)) or "none"
            errors.append(field_error(loc, f"the task accepts no param {name!r} (known: {known})"))
            continue
        problem = param_problem(value, rule)
        if problem:
            errors.append(field_error(loc, f"{name} {problem}", value))
    return errors


def declared_role(rule: dict[str, Any]) -> str | None:
    """The scale role (width, steps, batch) a param declaration gives, or None (``width: true``
    is the width role)."""
    role = rule.get("role")
    if role is None and rule.get("width"):
        return "width"
    return role if isinstance(role, str) else None


def param_problem(value: Any, rule: dict[str, Any]) -> str | None:
    """Why ``value`` breaks a declared param's type, choices or bounds, or None."""
    kind = rule.get("type")
    types = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}.get(kind)
    if types is None:
        return None
    if isinstance(value, bool) and kind != "bool" or not isinstance(value, types):
        return f"must be of type {kind}"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be finite"
    choices = rule.get("choices")
    if choices is not None and value not in choices:
        return f"must be one of {choices}"
    low, high = rule.get("low"), rule.get("high")
    if low is not None and value < low:
        return f"must be >= {low}"
    if high is not None and value > high:
        return f"must be <= {high}"
    return None


def edit_distance(a: str, b: str) -> int:
    """The edits (insert, delete, substitute, swap two neighbours) that turn ``a`` into ``b``."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        row = [i]
        for j, cb in enumerate(b, start=1):
            cost = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, prev2[j - 2] + 1)
            row.append(cost)
        prev2, prev = prev, row
    return prev[-1]


def max_typo_edits(name: str) -> int:
    """How many edits from an announced task name ``name`` still reads as a typo of it: none
    for names under 4 characters (``t`` and ``q`` are different tasks), one up to 7, two
    from 8 on."""
    return 0 if len(name) < 4 else 1 if len(name) < 8 else 2


def near_task(name: str, announced: set[str]) -> str | None:
    """The announced task ``name`` is most likely a misspelling of, or None (also when
    ``name`` is itself announced)."""
    if name in announced:
        return None
    near = [
        (d, other)
        for other in announced
        if (d := edit_distance(name.lower(), other.lower()) or 1) <= max_typo_edits(other)
    ]
    return min(near)[1] if near else None


def check_task_name(name: str, announced: set[str]) -> list[dict[str, Any]]:
    """Refuse a task name no worker announced that is an edit or two from one that some worker
    did (422 shape); any other name passes, announced or not (its sweep waits for a worker)."""
    near = near_task(name, announced)
    if near is None:
        return []
    return [
        field_error(
            ("task", "name"),
            f"no worker has announced task {name!r}: did you mean {near!r}?",
            name,
        )
    ]
