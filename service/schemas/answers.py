"""The answers fitted from a sweep's trials: the lr-versus-weight-decay rule (/scaling-rule)
with its surface, valley, stability and transfer; parameter importances; Lion against its
AdamW baseline arm (/arms); and the analytic Lion rule."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.schemas.reads import ConfigOut


class Estimate(BaseModel):
    """The fitted optimum of the surface, with 90% intervals; an axis the verdict says does not
    matter, and a predicted value the fit refuses, are None."""

    lr: float | None
    weight_decay: float | None
    value: float | None
    lr_ci: list[float] | None
    weight_decay_ci: list[float] | None
    value_ci: list[float] | None


class ValleyPoint(BaseModel):
    """The best weight decay at one lr, with its 90% band."""

    lr: float
    weight_decay: float
    weight_decay_lo: float
    weight_decay_hi: float


class BestPoint(BaseModel):
    """The best config's lr and weight decay, as on the map."""

    trial_number: int
    lr: float
    weight_decay: float
    value: float


class Transfer(BaseModel):
    """A sweep's answer moved to another width under a named width rule."""

    from_width: float
    to_width: float
    width_rule: Literal["sqrt", "mup", "mup_sqrt"]
    lr: float
    weight_decay: float
    moved: list[Literal["lr", "weight_decay"]]
    note: str


class StabilityOut(BaseModel):
    """Where training diverges along lr (estimated across weight decays)."""

    lr_diverged_min: float | None = Field(
        description="The lowest lr at and above which at least half the runs diverged."
    )
    lr_stable_max: float | None = Field(
        description="The highest lr below it at which a run trained."
    )
    n_diverged: int
    n_isolated: int = Field(description="Runs that diverged below the edge (not an edge).")
    note: str


class NoDecayOut(BaseModel):
    """Trials with weight decay 0 against the fitted optimum."""

    n: int
    mean: float
    value: float = Field(description="The fitted objective without decay at the optimum's lr.")
    value_ci: list[float]
    difference: float = Field(
        description="No decay minus the optimum (positive: decay helps, for a minimised objective)."
    )
    difference_ci: list[float]
    note: str


RuleVerdict = Literal["valley", "per_axis", "lr_only", "wd_only", "insufficient", "boundary"]


class RuleOut(BaseModel):
    """The lr-versus-weight-decay answer of a sweep: fitted surface, valley, optimum, verdict."""

    verdict: RuleVerdict
    reason: str
    n: int
    left_out: dict[str, int]
    left_out_reason: str
    method: str
    slope: float | None
    slope_ci: list[float] | None
    product: float | None
    product_ci: list[float] | None
    alpha0: float | None
    alpha0_ci: list[float] | None
    optimum: Estimate | None
    on_boundary: bool
    boundary_edges: list[str]
    noise_sd: float | None
    residual_sd: float | None
    valley: list[ValleyPoint]
    box: dict[str, list[float]]
    best: BestPoint | None
    width: float | None
    width_param: str | None
    transfer: Transfer | None
    stability: StabilityOut | None = None
    design: Literal["surface", "one_at_a_time"] = "surface"
    design_note: str = ""
    noise_source: str = ""
    n_imputed: int = Field(
        default=0,
        description="Pruned trials that entered with a final value imputed from "
        "their last reported value.",
    )
    n_coef: int = 0
    n_min: int = Field(
        default=0,
        description="The fewest distinct configs the model is fitted to (twice its coefficients "
        "plus two).",
    )
    value_scale: Literal["linear", "log"] = Field(
        default="linear",
        description="The scale the objective was fitted on: ``log`` for a positive objective "
        "spanning a decade or more (predicted values are reported on its own scale).",
    )
    n_configs: int = Field(
        default=0,
        description="Distinct configs among the fitted trials (``n``): the model-size rule counts "
        "these, since repeated seeds measure the noise, not the surface's shape.",
    )
    terms: list[str] = Field(
        default_factory=list, description="Other swept parameters' terms that entered the model."
    )
    weight_decay_scale: Literal["log", "linear"] = "log"
    support: dict[str, list[float]] = Field(
        default_factory=dict, description="The ranges of the fitted trials (answers lie inside)."
    )
    no_decay: NoDecayOut | None = None
    value_note: str | None = None
    notes: list[str] = Field(default_factory=list)


class ImportancesOut(BaseModel):
    """Parameter importances (Optuna's default evaluator)."""

    importances: dict[str, float]


class OptimizerArmOut(BaseModel):
    """One optimizer arm of a sweep with a baseline: its best config and its lr and weight
    decay optimum."""

    optimizer: Literal["lion", "adamw"]
    n_trials: int = Field(description="The arm's complete trials.")
    value_scale: Literal["linear", "log"] = Field(
        default="linear",
        description="The scale the objective was fitted on: ``log`` for a positive objective "
        "spanning a decade or more (predicted values are reported on its own scale).",
    )
    n_configs: int = Field(description="Distinct configs its best was chosen from.")
    best: ConfigOut | None = Field(
        description="The arm's best config by seed mean (as /best ranks them), its ci from "
        "noise_sd; None while the arm has no complete trial."
    )
    noise_sd: float | None = Field(
        description="The seed noise used for this arm: its own pooled sd, or the sweep's (both "
        "arms pooled) when the arm has no repeated config (noise_source says which)."
    )
    noise_df: int
    noise_source: Literal["arm", "sweep", "none"]
    fit_verdict: str | None = Field(
        description="The verdict of the rule's surface fitted to this arm's trials alone."
    )
    fit_reason: str | None
    lr: float | None
    lr_ci: list[float] | None
    lr_source: Literal["fit", "best_config"] | None = Field(
        description="fit: the surface's optimum (verdict valley or lr_only); best_config: the "
        "fit pins no optimum, so the best config's value (no interval)."
    )
    weight_decay: float | None
    weight_decay_ci: list[float] | None
    weight_decay_source: Literal["fit", "best_config"] | None = Field(
        description="fit: the surface's optimum (verdict valley); else the best config's."
    )


class RatioOut(BaseModel):
    """AdamW's optimum over Lion's, next to the Lion paper's expectation."""

    value: float | None = Field(description="AdamW's value / Lion's.")
    ci: list[float] | None = Field(
        description="90% interval from the two arms' bootstrap refits (both values fitted)."
    )
    expected: list[float] = Field(description="The paper's range of AdamW's value / Lion's.")
    agreement: Literal["agrees", "disagrees", "unclear"] = Field(
        description="agrees: the estimate is in the expected range and its interval overlaps "
        "it; disagrees: the interval lies outside it; unclear: neither, or no interval."
    )
    note: str


class ArmsOut(BaseModel):
    """Lion against its AdamW baseline arm: each arm's best, their difference with a verdict,
    and how their lr and weight decay optima compare with the Lion paper's."""

    baseline: Literal["adamw"] | None = Field(description="The sweep spec's baseline arm.")
    verdict: Literal["lion_better", "adamw_better", "tied", "not_measured"]
    reason: str
    lion: OptimizerArmOut | None
    adamw: OptimizerArmOut | None
    difference: float | None = Field(
        description="Lion's best mean − AdamW's best mean, in objective units."
    )
    difference_ci: list[float] | None = Field(
        description="90% Welch interval of the difference (each arm's own seed noise)."
    )
    difference_df: float | None
    selection_note: str = Field(
        description="How far each arm's best mean is biased by having been picked as the best."
    )
    lr_ratio: RatioOut | None
    weight_decay_ratio: RatioOut | None
    paper: str


class AnalyticRuleOut(BaseModel):
    """The analytic Lion rule (width/sigma or AdamW conversion)."""

    lr: float
    weight_decay: float
    product: float
    sigma: float | None = None
    alpha0: float | None = None
    factor: float | None = None
