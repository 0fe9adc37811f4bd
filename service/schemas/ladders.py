"""Width ladders: the spec (a sweep spec plus which task param is the width and its widths),
a confirmation request, and the read models of a ladder, its rungs' fits, the candidate
width rules' scores, the prediction at a width and its confirmations."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from service.schemas.answers import RuleVerdict
from service.schemas.common import Strict
from service.schemas.sweep_spec import SweepSpec, TaskRef

WidthRule = Literal["sqrt", "mup", "mup_sqrt"]
"""The candidate width rules: sqrt (lr ∝ w^-½, λ ∝ w^½), mup (lr ∝ 1/w, λ ∝ w) and
mup_sqrt (lr ∝ 1/w, λ ∝ w^½)."""

MAX_RUNGS = 12


class LadderDef(Strict):
    """Which task param is the width, the widths to sweep, and how the box moves with width."""

    param: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="The task param a worker declares as its width (``width: true``).",
    )
    widths: list[int | float] = Field(
        description=f"At least 3 distinct positive widths (at most {MAX_RUNGS}), one sweep each."
    )
    scale_box: Literal["shared", "sqrt", "mup", "mup_sqrt"] = Field(
        default="shared",
        description="shared: every rung searches the same box (no rule assumed). sqrt, mup, "
        "mup_sqrt: the box's lr range moves by (w/w_min)^a and its weight_decay range by "
        "(w/w_min)^b for that rule's (a, b) (lr_wd_product by the product's exponent a+b), "
        "so a wider ladder keeps each rung's optimum inside its box; the fit is unaffected.",
    )

    @field_validator("widths")
    @classmethod
    def _widths_rules(cls, widths: list[int | float]) -> list[int | float]:
        """At least 3 widths, each finite and > 0, no two the same."""
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


class LadderSpec(SweepSpec):
    """A width ladder as submitted: a sweep spec (every rung's) plus ``ladder``."""

    ladder: LadderDef


class ConfirmRequest(Strict):
    """Run a ladder's prediction at a new width."""

    width: int | float = Field(description="The width to confirm at (not one of the rungs).")
    seeds: int = Field(
        default=3, ge=2, le=20, description="Seeds for each of the two arms (≥ 2: a spread)."
    )

    @field_validator("width")
    @classmethod
    def _positive(cls, w: int | float) -> int | float:
        """A finite width > 0."""
        if isinstance(w, bool) or not math.isfinite(w) or w <= 0:
            raise ValueError("width must be a finite number > 0")
        return w


class RungOut(BaseModel):
    """One sweep of a ladder: a rung (fits the rule) or a confirmation (runs a prediction)."""

    width: float
    sweep_id: int
    role: Literal["rung", "confirm"]
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
    param: str
    widths: list[float]
    scale_box: str
    rungs: list[RungOut]
    confirmations: list[RungOut]
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

    width: float
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


class LadderPrediction(BaseModel):
    """The fitted exponents' prediction at a width, with 90% intervals."""

    width: float
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


class ConfirmationOut(BaseModel):
    """A ladder's prediction run at a new width, against the widest rung's own optimum
    (its fitted optimum where its verdict pins one down, else its best config) unmoved."""

    width: float
    sweep_id: int
    status: str
    predicted: LadderPrediction | None
    transferred: ArmOut
    untransferred: ArmOut
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


class LadderRuleOut(BaseModel):
    """How the optimum lr and weight decay move with width: exponents, rules, prediction."""

    ladder_id: int
    param: str
    verdict: Literal["rule_identified", "indistinguishable", "no_rule_fits", "insufficient"]
    reason: str
    complete: bool = Field(description="Every rung is complete (else the answer may change).")
    method: str
    rungs: list[RungFit]
    reference_width: float = Field(
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
