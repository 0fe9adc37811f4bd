"""Width ladders: the spec (a sweep spec plus which task param is the width and its widths),
a confirmation request, and the read models of a ladder, its rungs' fits, the candidate
width rules' scores, the prediction at a width and its confirmations."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from service.schemas.answers import RuleVerdict
from service.schemas.common import Strict
from service.schemas.sweep_spec import SweepSpec, TaskRef

WidthRule = Literal["sqrt", "mup", "mup_sqrt"]
"""The candidate width rules: sqrt (lr ∝ w^-½, λ ∝ w^½), mup (lr ∝ 1/w, λ ∝ w) and
mup_sqrt (lr ∝ 1/w, λ ∝ w^½)."""

MAX_RUNGS = 16
_PARAM_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,200}")


Role = Literal["width", "steps", "batch"]
"""A scale axis's role: the model's width, the training length, the batch size."""

BATCH_AXIS = "batch_size"
"""The batch axis every task has: the harness's batch size (a rung fixes the space's
``batch_size``), unless the task declares a batch param of its own."""

MAX_AXES = 3
TARGET_SPAN = 10.0
"""How far a confirmation's own sweep at the target reaches around the prediction, each way
(further where the prediction's interval does)."""


def _check_axis_values(name: str, values: list[float]) -> None:
    """Every value finite and > 0; at least 3 distinct (a line needs a third point to test)."""
    for v in values:
        if isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"every {name} must be a finite number > 0 (got {v!r})")
    distinct = len({float(v) for v in values})
    if distinct < 3:
        raise ValueError(
            f"axis {name!r} has {distinct} distinct value{'s' if distinct != 1 else ''}; a "
            "fitted axis needs at least 3 (a line through 2 points cannot be tested)"
        )


class FollowedRung(Strict):
    """A follow rung the server has added: where, around which box, and why that box."""

    point: dict[str, int | float] = Field(description="Its value on every axis.")
    box: Literal["fit", "ladder"] = Field(
        description="fit: lr (and weight decay, where the fit moves it) centred on the joint "
        "fit's prediction; ladder: the ladder's own box (there was no fit)."
    )
    lr: float | None = Field(default=None, description="The predicted lr the box centres on.")
    weight_decay: float | None = Field(
        default=None, description="The predicted weight decay (None: not moved by the fit)."
    )
    note: str = Field(default="", description="Why this box: the fit's note or why there was none.")


class FollowDef(Strict):
    """Rungs that follow the fit: not started at creation, but added once every rung started at
    creation is complete, each box centred on the joint fit's prediction at its point (as
    ``POST /api/ladders/{id}/rungs`` with ``box: fit`` would), or the ladder's own box when
    there is no fit then (``released`` says why)."""

    rungs: list[dict[str, int | float]] = Field(
        default_factory=list,
        max_length=MAX_RUNGS,
        description="The rungs still waiting for the fit, a value per axis each (every axis of "
        "the ladder, within the task's declared bounds, none a rung of ``ladder.rungs`` or "
        f"twice; with those at most {MAX_RUNGS} in all). The server empties it as it adds them. "
        "The rungs started at creation must make a design the fit can use on their own (at "
        "least 3 distinct values on every axis): these do not count.",
    )
    span: float = Field(
        default=10.0,
        ge=1.5,
        le=1e4,
        description="Each added rung's box reach around the prediction, as a factor each way.",
    )
    held: bool = Field(
        default=False,
        description="The rungs wait while true: cancelling the ladder sets it, resuming it "
        "clears it (and adds them if every started rung is complete).",
    )
    released: list[FollowedRung] = Field(
        default_factory=list,
        description="Filled in by the server: the follow rungs it added and around which box.",
    )

    @field_validator("rungs")
    @classmethod
    def _points(cls, rungs: list[dict[str, int | float]]) -> list[dict[str, int | float]]:
        """Finite values > 0, param names, no point twice."""
        seen: dict[tuple, int] = {}
        for i, rung in enumerate(rungs):
            for name, v in rung.items():
                if not _PARAM_NAME.fullmatch(name):
                    raise ValueError(f"axis name {name!r} is not a param name")
                if isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                    raise ValueError(f"every {name} must be a finite number > 0 (got {v!r})")
            key = tuple(sorted((k, float(v)) for k, v in rung.items()))
            if key in seen:
                raise ValueError(f"follow rungs {seen[key]} and {i} are the same point {rung}")
            seen[key] = i
        return rungs


class LadderDef(Strict):
    """The scale axes a ladder varies and its rungs (a value per axis each), and how the box
    moves with width. Either ``param`` + ``widths`` (one axis, the shorthand) or ``rungs``."""

    param: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="One-axis shorthand: the task param a worker declares as its width "
        "(``role: width`` or ``width: true``), with ``widths``.",
    )
    widths: list[int | float] | None = Field(
        default=None,
        description=f"One-axis shorthand: at least 3 distinct positive widths (at most "
        f"{MAX_RUNGS}), one sweep each.",
    )
    rungs: list[dict[str, int | float]] | None = Field(
        default=None,
        description=f"The design: 3 to {MAX_RUNGS} rungs, each a value per axis, e.g. "
        "``[{d_model: 64, steps: 200}, {d_model: 128, steps: 200}, …]``. An axis is a task "
        "param the worker declares with a role (width, steps, batch) or ``batch_size`` (the "
        "harness's batch size); at most 3 axes, one per role; every rung names every axis; "
        "every axis takes at least 3 distinct values; no rung twice.",
    )
    scale_box: Literal["shared", "sqrt", "mup", "mup_sqrt"] = Field(
        default="shared",
        description="shared: every rung searches the same box (no rule assumed). sqrt, mup, "
        "mup_sqrt: the box's lr range moves by (w/w_min)^a and its weight_decay range by "
        "(w/w_min)^b for that rule's (a, b) (lr_wd_product by the product's exponent a+b), "
        "so a wider ladder keeps each rung's optimum inside its box; the fit is unaffected. "
        "Needs a width axis.",
    )
    follow: FollowDef | None = Field(
        default=None,
        description="Rungs added once the rungs above are complete, each box centred on the "
        "joint fit's prediction at its point: after a cheap first design (say a line along each "
        "axis through a shared corner), the far rungs search where the optimum is expected.",
    )
    roles: dict[str, Role] | None = Field(
        default=None,
        description="Each axis's role, as the task declares it. Filled in by the server on "
        "submission; when given, it must agree with the declarations.",
    )

    @field_validator("widths")
    @classmethod
    def _widths_rules(cls, widths: list[int | float] | None) -> list[int | float] | None:
        """At least 3 widths, each finite and > 0, no two the same."""
        if widths is None:
            return None
        if len(widths) < 3:
            raise ValueError(
                f"a ladder needs at least 3 widths to fit and test a width rule (got {len(widths)})"
            )
        if len(widths) > MAX_RUNGS:
            raise ValueError(f"a ladder has at most {MAX_RUNGS} widths (got {len(widths)})")
        for w in widths:
            if isinstance(w, bool) or not math.isfinite(w) or w <= 0:
                raise ValueError(f"every width must be a finite number > 0 (got {w!r})")
        if len({float(w) for w in widths}) != len(widths):
            dup = sorted({w for w in widths if widths.count(w) > 1})
            raise ValueError(f"widths must be distinct (repeated: {dup})")
        return sorted(widths)

    @field_validator("rungs")
    @classmethod
    def _rungs_rules(
        cls, rungs: list[dict[str, int | float]] | None
    ) -> list[dict[str, int | float]] | None:
        """3 to MAX_RUNGS rungs over the same 1–3 axes, each axis with ≥ 3 distinct values,
        no rung twice."""
        if rungs is None:
            return None
        if not 3 <= len(rungs) <= MAX_RUNGS:
            raise ValueError(f"a ladder has 3 to {MAX_RUNGS} rungs (got {len(rungs)})")
        axes = list(rungs[0])
        if not 1 <= len(axes) <= MAX_AXES:
            raise ValueError(f"a rung names 1 to {MAX_AXES} axes (got {len(axes)}: {axes})")
        for i, rung in enumerate(rungs):
            if set(rung) != set(axes):
                raise ValueError(
                    f"rung {i} names {sorted(rung)}, rung 0 {sorted(axes)}: every rung names "
                    "the same axes"
                )
            for name in rung:
                if not _PARAM_NAME.fullmatch(name):
                    raise ValueError(f"axis name {name!r} is not a param name")
        for name in axes:
            _check_axis_values(name, [r[name] for r in rungs])
        seen: dict[tuple[float, ...], int] = {}
        for i, rung in enumerate(rungs):
            key = tuple(float(rung[a]) for a in axes)
            if key in seen:
                raise ValueError(f"rungs {seen[key]} and {i} are the same point {rung}")
            seen[key] = i
        return [{a: r[a] for a in axes} for r in rungs]

    @field_validator("follow")
    @classmethod
    def _follow_rules(cls, follow: FollowDef | None, info: ValidationInfo) -> FollowDef | None:
        """Each follow rung names every axis and is no rung of the ladder; the two lists hold
        at most MAX_RUNGS rungs together (checked when the rungs themselves are valid)."""
        rungs, param, widths = (info.data.get(k) for k in ("rungs", "param", "widths"))
        if follow is None:
            return None
        if rungs is not None:
            points = rungs
        elif param is not None and widths is not None:
            points = [{param: w} for w in widths]
        else:
            return follow
        axes = set(points[0])
        started = {tuple(sorted((k, float(v)) for k, v in p.items())) for p in points}
        for i, rung in enumerate(follow.rungs):
            if set(rung) != axes:
                raise ValueError(
                    f"follow.rungs[{i}] names {', '.join(sorted(rung)) or 'none'}: a rung of "
                    f"this ladder names {', '.join(sorted(axes))}"
                )
            if tuple(sorted((k, float(v)) for k, v in rung.items())) in started:
                raise ValueError(f"follow.rungs[{i}] {rung} is a rung of the ladder already")
        total = len(points) + len(follow.rungs)
        if total > MAX_RUNGS:
            raise ValueError(
                f"a ladder has at most {MAX_RUNGS} rungs, follow rungs included (got {total})"
            )
        return follow

    @model_validator(mode="after")
    def _one_form(self) -> LadderDef:
        """Either param + widths or rungs."""
        if self.rungs is None:
            if self.param is None or self.widths is None:
                raise ValueError(
                    "give either rungs (a value per axis each) or param and widths (one axis)"
                )
        elif self.param is not None or self.widths is not None:
            raise ValueError("give either rungs or param and widths, not both")
        return self

    def pending(self) -> list[dict[str, float]]:
        """The follow rungs not added yet, as ``{axis: value}`` in the axes' order."""
        if self.follow is None:
            return []
        return [{a: r[a] for a in self.axes()} for r in self.follow.rungs]

    def axes(self) -> list[str]:
        """The axes' names, in the rungs' order (the width param for the shorthand)."""
        return [self.param] if self.rungs is None else list(self.rungs[0])

    def points(self) -> list[dict[str, float]]:
        """Every rung as ``{axis: value}``."""
        if self.rungs is None:
            return [{self.param: w} for w in self.widths]
        return [dict(r) for r in self.rungs]


class LadderSpec(SweepSpec):
    """A width ladder as submitted: a sweep spec (every rung's) plus ``ladder``."""

    ladder: LadderDef


class ExtendRequest(Strict):
    """Add rungs to a ladder, their lr and weight-decay box centred on the current fit's
    prediction at each (``box: fit``) or the ladder's own box (``box: ladder``)."""

    rungs: list[dict[str, int | float]] = Field(
        min_length=1,
        max_length=MAX_RUNGS,
        description="The new rungs, a value per axis of the ladder each.",
    )
    box: Literal["fit", "ladder"] = Field(
        default="fit",
        description="fit: lr (and weight decay, where the data pin it) searched from the "
        "prediction / span to the prediction × span; ladder: the ladder's own box.",
    )
    span: float = Field(
        default=10.0,
        ge=1.5,
        le=1e4,
        description="The box's reach around the prediction, as a factor each way.",
    )

    @field_validator("rungs")
    @classmethod
    def _points(cls, rungs: list[dict[str, int | float]]) -> list[dict[str, int | float]]:
        """Finite values > 0."""
        for rung in rungs:
            for name, v in rung.items():
                if isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                    raise ValueError(f"every {name} must be a finite number > 0 (got {v!r})")
        return rungs


class LadderFromSweeps(Strict):
    """A ladder made of sweeps that exist already (runs imported from elsewhere, or sweeps run
    before): each becomes a rung at the point its task params (and fixed batch size) give."""

    name: str = Field(min_length=1, max_length=200)
    sweeps: list[int] = Field(
        description=f"3 to {MAX_RUNGS} sweep ids of one task, in no ladder yet, no two the same."
    )
    axes: dict[str, Role] = Field(
        description="Each axis (a task param, or ``batch_size``: the sweep's fixed batch size) "
        "and its role: 1 to 3 axes, one per role."
    )

    @field_validator("sweeps")
    @classmethod
    def _sweeps_rules(cls, ids: list[int]) -> list[int]:
        """3 to MAX_RUNGS distinct ids."""
        if not 3 <= len(ids) <= MAX_RUNGS:
            raise ValueError(f"a ladder has 3 to {MAX_RUNGS} rungs (got {len(ids)} sweeps)")
        if len(set(ids)) != len(ids):
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"sweeps must be distinct (repeated: {repeated})")
        return ids

    @field_validator("axes")
    @classmethod
    def _axes_rules(cls, axes: dict[str, str]) -> dict[str, str]:
        """1 to MAX_AXES axes with distinct roles and param names."""
        if not 1 <= len(axes) <= MAX_AXES:
            raise ValueError(f"a ladder has 1 to {MAX_AXES} axes (got {len(axes)})")
        if len(set(axes.values())) != len(axes):
            raise ValueError("one axis per role")
        for name in axes:
            if not _PARAM_NAME.fullmatch(name):
                raise ValueError(f"axis name {name!r} is not a param name")
        return axes


class ConfirmRequest(Strict):
    """Run a ladder's prediction at a new point: a value for each of the ladder's axes, by
    role (``width``, ``steps``, ``batch_size``)."""

    width: int | float | None = Field(default=None, description="The width to confirm at.")
    steps: int | float | None = Field(default=None, description="The training length.")
    batch_size: int | float | None = Field(default=None, description="The batch size.")
    seeds: int = Field(default=3, ge=2, le=20, description="Seeds for each arm (≥ 2: a spread).")
    rules: bool = Field(
        default=False,
        description="Also run an arm per named rule's prediction at the point (the rule's "
        "exponents in place of the fitted ones), so the confirmation tests the rule itself.",
    )
    sweep_trials: int | None = Field(
        default=None,
        ge=8,
        le=1000,
        description="Also run a small sweep of this many trials at the point itself (a rung's "
        "spec there, its lr and weight-decay box centred on the prediction, ÷/× "
        f"{TARGET_SPAN:g} or as far as the prediction's interval reaches), its top 3 configs "
        "re-run with `seeds` fresh seeds: the confirmation then says whether the prediction "
        "is within the seed noise of that sweep's best.",
    )

    @field_validator("width", "steps", "batch_size")
    @classmethod
    def _positive(cls, v: int | float | None, info: ValidationInfo) -> int | float | None:
        """A finite number > 0."""
        if v is not None and (isinstance(v, bool) or not math.isfinite(v) or v <= 0):
            raise ValueError(f"{info.field_name} must be a finite number > 0")
        return v

    @model_validator(mode="after")
    def _some_point(self) -> ConfirmRequest:
        """At least one axis's value."""
        if self.width is None and self.steps is None and self.batch_size is None:
            raise ValueError("give the point to confirm at: width, steps and/or batch_size")
        return self

    def target(self) -> dict[str, float]:
        """The point by role."""
        got = {"width": self.width, "steps": self.steps, "batch": self.batch_size}
        return {k: v for k, v in got.items() if v is not None}


class AxisOut(BaseModel):
    """One scale axis of a ladder: the task param and its role."""

    param: str
    role: Role


class RungOut(BaseModel):
    """One sweep of a ladder: a rung (fits the rule), a confirmation (runs a prediction) or a
    confirmation's own small sweep at its point (``target``)."""

    width: float | None = Field(description="Its width (None for a ladder with no width axis).")
    point: dict[str, float] = Field(description="Its value on every axis.")
    sweep_id: int
    role: Literal["rung", "confirm", "target"]
    status: Literal["running", "complete", "cancelled"]
    n_trials: int
    finished: int
    progress: float


class LadderOut(BaseModel):
    """A width ladder: its rungs and confirmations, and where they stand."""

    id: int
    name: str
    status: Literal["running", "complete", "cancelled"]
    task: TaskRef
    param: str = Field(description="The width axis (else the first axis).")
    widths: list[float] = Field(description="The width axis's distinct values.")
    axes: list[AxisOut] = Field(description="Every axis the rungs vary, with its role.")
    scale_box: str
    rungs: list[RungOut]
    confirmations: list[RungOut]
    pending: list[dict[str, float]] = Field(
        default_factory=list,
        description="Follow rungs waiting for the rungs above to complete (then added, each "
        "box centred on the fit's prediction there).",
    )
    pending_note: str = Field(
        default="", description="What the pending rungs wait for (empty when none wait)."
    )
    followed: list[FollowedRung] = Field(
        default_factory=list,
        description="The follow rungs added so far, each with its box and why that box.",
    )
    progress: float
    created_at: datetime | None
    spec: dict[str, Any]


class LadderPage(BaseModel):
    """One page of ladders."""

    items: list[LadderOut]
    total: int
    offset: int
    limit: int


class RungFit(BaseModel):
    """A rung's fitted optimum (from its response surface) and what the ladder fit used."""

    width: float | None
    point: dict[str, float] = Field(description="The rung's value on every axis.")
    sweep_id: int
    status: str
    verdict: RuleVerdict | None
    reason: str
    n: int
    lr: float | None = None
    lr_ci: list[float] | None = None
    weight_decay: float | None = None
    weight_decay_ci: list[float] | None = None
    product: float | None = None
    product_ci: list[float] | None = None
    value: float | None = None
    value_ci: list[float] | None = None
    used: list[Literal["lr", "weight_decay", "value"]] = Field(
        description="Which of the rung's estimates entered the fit: a coordinate of the "
        "optimum enters when it matters (F-test p < 0.05) and lies inside the box in 90% of "
        "the surface's refits (weight decay only with the lr)."
    )
    lr_inside: float | None = Field(
        default=None, description="Share of refits with the optimum lr inside the box."
    )
    weight_decay_inside: float | None = Field(
        default=None,
        description="Share of refits with the optimum off the weight-decay (or product) edges.",
    )


class RuleScore(BaseModel):
    """How well one candidate width rule explains the rungs (its intercepts fitted)."""

    name: WidthRule
    lr_exponent: float
    wd_exponent: float
    chi2: float = Field(description="Σ of squared standardised residuals of the rungs' optima.")
    dof: int
    p_value: float = Field(description="Goodness of fit: P(χ² ≥ chi2) if the rule held.")
    relative_likelihood: float = Field(
        description="exp(-(chi2 - min chi2)/2): 1 for the best rule."
    )
    consistent: bool = Field(description="p_value ≥ 0.05.")
    lr_at_reference: float
    weight_decay_at_reference: float | None
    lr: float | None = Field(default=None, description="Its prediction at ?width.")
    weight_decay: float | None = None


class AxisReach(BaseModel):
    """Where a prediction's point lies on one axis against the rungs."""

    param: str
    role: Role
    value: float
    low: float = Field(description="The rungs' smallest value on this axis.")
    high: float = Field(description="The rungs' largest value on this axis.")
    extrapolated: bool
    factor: float = Field(description="How far beyond the rungs, as a factor (1: inside).")


class LadderPrediction(BaseModel):
    """The fitted exponents' prediction at a point, with 90% intervals."""

    width: float | None
    point: dict[str, float] = Field(default_factory=dict, description="A value per axis.")
    reach: list[AxisReach] = Field(
        default_factory=list, description="Per axis, whether and how far it extrapolates."
    )
    lr: float
    lr_ci: list[float]
    weight_decay: float
    weight_decay_ci: list[float] | None
    weight_decay_moved: bool
    value: float | None
    value_ci: list[float] | None
    note: str


class ArmOut(BaseModel):
    """One arm of a confirmation: its config and the seeds' outcome."""

    lr: float
    weight_decay: float
    n: int
    mean: float | None
    ci: list[float] | None
    values: list[float]
    source: str = Field(description="Where the arm's lr and weight decay come from.")


class TargetSweepOut(BaseModel):
    """The small sweep run at a confirmation's point itself, and the prediction against its
    best config (valued on fresh seeds)."""

    sweep_id: int
    status: str
    n_trials: int
    finished: int = Field(description="Its complete runs, the re-runs of its top configs included.")
    best: ArmOut | None = Field(
        description="The sweep's best config, its mean over runs that took no part in "
        "ranking it (the fresh seeds of its re-evaluation)."
    )
    lr: float | None = Field(description="The sweep's own fitted optimum lr, where it pins one.")
    lr_ci: list[float] | None
    weight_decay: float | None = Field(
        description="The sweep's own fitted optimum weight decay, where it pins one."
    )
    weight_decay_ci: list[float] | None
    prediction_inside: bool | None = Field(
        description="The predicted lr (and weight decay, where the sweep pins it) inside the "
        "sweep's own 90% intervals; None where it pins no lr."
    )
    difference: float | None = Field(
        description="prediction arm − the sweep's best, mean objective (as measured; negative "
        "is the prediction's lower objective)."
    )
    difference_ci: list[float] | None
    noise_sd: float | None = Field(
        description="The seed-to-seed sd at the point, pooled over both sweeps' repeated configs."
    )
    verdict: Literal["pending", "confirmed", "target_better", "unmeasured"] = Field(
        description="target_better: the prediction is worse than the sweep's best by more than "
        "one seed sd, its 90% interval clear of 0; confirmed: otherwise (within one seed sd, "
        "better, or not to be told apart at these seeds: the note says which)."
    )
    note: str


class ConfirmationOut(BaseModel):
    """A ladder's prediction run at a new width, against the widest rung's own optimum
    (its fitted optimum where its verdict pins one down, else its best config) unmoved."""

    width: float | None
    point: dict[str, float] = Field(default_factory=dict, description="A value per axis.")
    sweep_id: int
    status: str
    predicted: LadderPrediction | None
    transferred: ArmOut
    untransferred: ArmOut
    arms: list[ArmOut] = Field(
        default_factory=list,
        description="Further arms: a candidate weight decay each where the data leave it open, "
        "a named rule's prediction each when asked for.",
    )
    difference: float | None = Field(
        description="transferred − untransferred mean objective (negative: the transfer is "
        "better when minimising)."
    )
    difference_ci: list[float] | None
    within_prediction: bool | None = Field(
        description="The transferred arm's mean lies inside the predicted objective's interval."
    )
    verdict: Literal[
        "pending", "transfer_better", "no_difference", "untransferred_better", "unmeasured"
    ]
    note: str
    target: TargetSweepOut | None = Field(
        default=None,
        description="The small sweep at the point itself (confirm with sweep_trials), and "
        "whether the prediction is within the seed noise of its best.",
    )


class AxisRuleOut(BaseModel):
    """One named rule tested on one axis of the joint fit: the exponents it fixes, and the
    Wald test of the fitted exponents against them."""

    name: str
    lr_exponent: float | None
    wd_exponent: float | None
    product_exponent: float | None
    tested: list[str] = Field(description="The exponents tested (those the fit has).")
    chi2: float
    dof: int
    p_value: float
    relative_likelihood: float
    consistent: bool


class LadderAxisOut(BaseModel):
    """How the optimum moves along one scale axis, from one fit of every rung's trials at once
    (90% intervals)."""

    param: str
    role: Literal["width", "steps", "batch"]
    lr_exponent: float | None = Field(description="None when the lr does not move the objective.")
    lr_exponent_ci: list[float] | None
    wd_exponent: float | None = Field(
        description="None when weight decay does not move the objective (no exponent to give)."
    )
    wd_exponent_ci: list[float] | None
    product_exponent: float | None = Field(description="Exponent of lr × weight decay.")
    product_exponent_ci: list[float] | None
    timescale_exponent: float | None = Field(
        description="Exponent of the decay timescale τ = 1/(lr × weight decay), in steps."
    )
    timescale_exponent_ci: list[float] | None
    timescale_examples_exponent: float | None = Field(
        default=None,
        description="Exponent of the decay timescale in examples seen (τ × batch size: in "
        "epochs or tokens up to a constant): τ's own plus 1 along the batch axis, the same "
        "along the others.",
    )
    timescale_examples_exponent_ci: list[float] | None = None
    values: list[float] = Field(default_factory=list, description="The rungs' values on it.")
    rules: list[AxisRuleOut] = Field(
        default_factory=list, description="The role's named rules, tested on this axis's fit."
    )
    best_rule: str | None = Field(
        default=None, description="The rule the data identify (None: none or several fit)."
    )
    rule_note: str = ""


class LadderRuleOut(BaseModel):
    """How the optimum lr and weight decay move with width: exponents, rules, prediction."""

    ladder_id: int
    param: str
    verdict: Literal["rule_identified", "indistinguishable", "no_rule_fits", "insufficient"]
    reason: str
    complete: bool = Field(description="Every rung is complete (else the answer may change).")
    method: str
    rungs: list[RungFit]
    reference_width: float | None = Field(
        description="Widths enter the lines as ln(w / reference_width): the geometric mean of "
        "the ladder's widths."
    )
    lr_exponent: float | None
    lr_exponent_ci: list[float] | None
    lr_at_reference: float | None
    wd_exponent: float | None
    wd_exponent_ci: list[float] | None
    wd_at_reference: float | None
    product_exponent: float | None
    product_exponent_ci: list[float] | None
    value_slope: float | None = Field(
        description="d objective / d ln width of the rungs' optimum values."
    )
    rules: list[RuleScore]
    best_rule: WidthRule | None
    prediction: LadderPrediction | None
    confirmations: list[ConfirmationOut]
    axes: list[LadderAxisOut] = Field(
        default_factory=list,
        description="The joint fit: one entry per scale axis, from every rung's trials fitted "
        "at once (a shared basin whose optimum moves with the axis); empty when it cannot be "
        "fitted, and axes_note says why.",
    )
    axes_note: str = ""
