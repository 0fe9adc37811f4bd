"""The sweep spec as submitted (JSON or YAML): ``SweepSpec`` and its parts (the search space
and its dimensions, the task, objective, sampler, pruner, budget, enqueued configs and the
re-evaluation), with the validators that turn a bad spec into a 422 naming the field."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from optim.scaling import ADAMW_TO_LION_FACTOR, from_adamw
from service.schemas.common import (
    INT32_MAX,
    INT_PARAMS,
    PARAMS,
    SEED_LIMIT,
    PrunerName,
    SamplerName,
    Strict,
    Text,
)
from service.schemas.json_rules import JsonTree


class Dimension(Strict):
    """One search dimension: a fixed ``value``, ``{low, high, log?, step?}`` or ``choices``."""

    value: float | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(default=None, gt=0)
    choices: list[float] | None = Field(default=None, min_length=1, max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _scalar_is_fixed(cls, data: Any) -> Any:
        """A bare number means a fixed value."""
        if isinstance(data, bool):
            raise ValueError("expected a number, a range {low, high} or {choices: [...]}")
        if isinstance(data, int | float):
            return {"value": data}
        return data

    @model_validator(mode="after")
    def _one_form(self) -> Dimension:
        """Exactly one of value / range / choices; ranges are well-formed."""
        is_range = self.low is not None or self.high is not None
        forms = [self.value is not None, is_range, self.choices is not None]
        if sum(forms) != 1:
            raise ValueError("give exactly one of a fixed value, {low, high} or {choices: [...]}")
        if is_range:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both low and high")
            if self.log and self.low <= 0:
                raise ValueError(f"a log range needs low > 0 (got low={self.low})")
            if self.low > self.high:
                raise ValueError(f"low must be <= high (got low={self.low}, high={self.high})")
            if self.log and self.step is not None:
                raise ValueError("a log range cannot have a step")
            if self.step is not None and math.isfinite(self.high - self.low):
                n = (self.high - self.low) / self.step
                if abs(n - round(n)) > 1e-9 * max(1.0, n):
                    raise ValueError(
                        f"step must divide high - low (got low={self.low}, high={self.high}, "
                        f"step={self.step})"
                    )
        elif self.log or self.step is not None:
            raise ValueError("log and step apply only to a {low, high} range")
        for v in self.values():
            if not math.isfinite(v):
                raise ValueError("values must be finite numbers")
        return self

    def n_points(self) -> int:
        """How many values a grid takes from this dimension (choices, or range / step + 1)."""
        if self.value is not None:
            return 1
        if self.choices is not None:
            return len(self.choices)
        assert self.step is not None, "a continuous range has no grid points"
        return round((self.high - self.low) / self.step) + 1

    def values(self) -> list[float]:
        """Every number the dimension mentions (for range checks)."""
        if self.value is not None:
            return [self.value]
        if self.choices is not None:
            return list(self.choices)
        return [v for v in (self.low, self.high) if v is not None]

    @property
    def is_fixed(self) -> bool:
        """True for a single fixed value (not searched)."""
        return self.value is not None

    @property
    def is_continuous(self) -> bool:
        """True for a range without a step (a grid cannot enumerate it)."""
        return self.low is not None and self.step is None


DEFAULT_SPACE: dict[str, Dimension] = {
    "lr": Dimension(low=1e-5, high=1e-3, log=True),
    "weight_decay": Dimension(low=1e-3, high=1.0, log=True),
    "beta1": Dimension(low=0.85, high=0.95),
    "beta2": Dimension(choices=[0.98, 0.99]),
}


class SearchSpace(Strict):
    """The six Lion hyperparameters; omitted ones take Lion-aware defaults (or are not swept)."""

    lr: Dimension = Field(default_factory=lambda: DEFAULT_SPACE["lr"].model_copy())
    weight_decay: Dimension | None = Field(
        default_factory=lambda: DEFAULT_SPACE["weight_decay"].model_copy()
    )
    beta1: Dimension = Field(default_factory=lambda: DEFAULT_SPACE["beta1"].model_copy())
    beta2: Dimension = Field(default_factory=lambda: DEFAULT_SPACE["beta2"].model_copy())
    lr_wd_product: Dimension | None = Field(
        default=None,
        description="Search along the valley: the product lr·weight_decay instead of "
        "weight_decay (each trial's weight_decay is product / lr). Give it or weight_decay, "
        "not both.",
    )
    warmup_steps: Dimension | None = None
    batch_size: Dimension | None = None

    @model_validator(mode="after")
    def _product_or_decay(self) -> SearchSpace:
        """``lr_wd_product`` replaces ``weight_decay``: giving both is an error."""
        if self.lr_wd_product is not None:
            if "weight_decay" in self.model_fields_set and self.weight_decay is not None:
                raise ValueError(
                    "give either weight_decay or lr_wd_product, not both (with lr_wd_product "
                    "each trial's weight_decay is lr_wd_product / lr)"
                )
            self.weight_decay = None
        elif self.weight_decay is None:
            raise ValueError("weight_decay may only be left out when lr_wd_product is given")
        return self

    @field_validator("*")
    @classmethod
    def _param_rules(cls, dim: Dimension | None, info: ValidationInfo) -> Dimension | None:
        """Per-parameter domains: lr > 0, weight_decay >= 0, betas in [0, 1), ints."""
        if dim is None:
            return dim
        name = info.field_name
        vals = dim.values()
        if name == "lr" and any(v <= 0 for v in vals):
            raise ValueError("lr must be > 0")
        if name == "weight_decay" and any(v < 0 for v in vals):
            raise ValueError("weight_decay must be >= 0")
        if name == "lr_wd_product" and any(v <= 0 for v in vals):
            raise ValueError("lr_wd_product must be > 0")
        if name in ("beta1", "beta2") and any(not 0 <= v < 1 for v in vals):
            raise ValueError(f"{name} must be in [0, 1)")
        if name in INT_PARAMS:
            step_ok = dim.step is None or dim.step == int(dim.step)
            if any(v != int(v) for v in vals) or not step_ok:
                raise ValueError(f"{name} must be an integer")
            low = 1 if name == "batch_size" else 0
            if any(v < low for v in vals):
                raise ValueError(f"{name} must be >= {low}")
            if any(v > INT32_MAX for v in vals):
                raise ValueError(f"{name} must be <= {INT32_MAX}")
        return dim

    def dimensions(self) -> dict[str, Dimension]:
        """The dimensions that are set, by parameter name."""
        return {n: d for n in PARAMS if (d := getattr(self, n)) is not None}


class TaskRef(Strict):
    """A task by name (registered by workers) with its parameters."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:\-]+$")
    params: JsonTree = Field(default_factory=dict)


class Objective(Strict):
    """The metric to optimize and in which direction."""

    metric: Text = Field(default="val_loss", min_length=1, max_length=100)
    direction: Literal["minimize", "maximize"] = "minimize"


class SamplerSpec(Strict):
    """Which Optuna sampler and its seed."""

    name: SamplerName = "tpe"
    seed: int | None = Field(default=None, ge=0, lt=SEED_LIMIT)


class PrunerSpec(Strict):
    """Which Optuna pruner, with its main knobs."""

    name: PrunerName = "hyperband"
    min_resource: int | None = Field(default=None, ge=1, le=INT32_MAX)
    max_resource: int | None = Field(default=None, ge=1, le=INT32_MAX)
    reduction_factor: int | None = Field(default=None, ge=2, le=100)
    n_startup_trials: int | None = Field(default=None, ge=0, le=INT32_MAX)
    n_warmup_steps: int | None = Field(default=None, ge=0, le=INT32_MAX)

    @model_validator(mode="after")
    def _resources_ordered(self) -> PrunerSpec:
        """min_resource <= max_resource when both are given."""
        lo, hi = self.min_resource, self.max_resource
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min_resource must be <= max_resource (got {lo} > {hi})")
        return self


class Budget(Strict):
    """Per-trial budget passed to workers."""

    max_steps: int | None = Field(default=None, ge=1, le=INT32_MAX)


class FromAdamW(Strict):
    """An AdamW config to convert with ``optim.scaling.from_adamw``."""

    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    factor: float = Field(default=ADAMW_TO_LION_FACTOR, gt=0)

    @model_validator(mode="after")
    def _converts_finite(self) -> FromAdamW:
        """The converted Lion lr and weight decay stay within float range."""
        lr, wd = from_adamw(self.lr, self.weight_decay, factor=self.factor)
        if not (math.isfinite(lr) and math.isfinite(wd)):
            raise ValueError("lr / factor or weight_decay * factor is beyond float range")
        return self


class EnqueuedConfig(Strict):
    """A config to try first; unspecified parameters are sampled."""

    lr: float | None = Field(default=None, gt=0)
    weight_decay: float | None = Field(default=None, ge=0)
    lr_wd_product: float | None = Field(default=None, gt=0)
    beta1: float | None = Field(default=None, ge=0, lt=1)
    beta2: float | None = Field(default=None, ge=0, lt=1)
    warmup_steps: int | None = Field(default=None, ge=0, le=INT32_MAX)
    batch_size: int | None = Field(default=None, ge=1, le=INT32_MAX)
    optimizer: Literal["lion", "adamw"] | None = None
    from_adamw: FromAdamW | None = None

    @model_validator(mode="after")
    def _no_conflict(self) -> EnqueuedConfig:
        """from_adamw sets lr and weight_decay: do not give them too."""
        if self.from_adamw is not None and (self.lr is not None or self.weight_decay is not None):
            raise ValueError("give either from_adamw or lr/weight_decay, not both")
        if self.lr_wd_product is not None and (
            self.weight_decay is not None or self.from_adamw is not None
        ):
            raise ValueError("give either lr_wd_product or weight_decay / from_adamw, not both")
        return self


class Reevaluate(Strict):
    """Re-run the leading configs with fresh seeds once the sweep's own trials are done.

    Written as ``{top_k, seeds}`` (on), or the words ``auto`` / ``off``.
    """

    mode: Literal["auto", "on", "off"] = Field(
        default="on",
        description="on: always; auto: when it costs at most the server's "
        "LIONSWEEP_REEVALUATE_AUTO_SECONDS of worker time; off: never.",
    )
    top_k: int = Field(default=3, ge=1, le=50, description="How many leading configs.")
    seeds: int = Field(
        default=3,
        ge=2,
        le=50,
        description="Fresh seeds per config (at least 2, so the re-runs alone give a spread).",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_word(cls, data: Any) -> Any:
        """``"auto"`` and ``"off"`` stand for ``{mode: auto}`` and ``{mode: off}``."""
        if isinstance(data, str):
            if data in ("auto", "off"):
                return {"mode": data}
            raise ValueError("must be 'auto', 'off' or {top_k, seeds}")
        return data


class SweepSpec(Strict):
    """A sweep as submitted (JSON or YAML)."""

    name: Text = Field(min_length=1, max_length=200)
    task: TaskRef
    space: SearchSpace = Field(default_factory=SearchSpace)
    objective: Objective = Field(default_factory=Objective)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    n_trials: int = Field(default=20, ge=1, le=INT32_MAX)
    max_retries: int = Field(default=2, ge=0, le=100)
    enqueue: list[EnqueuedConfig] = Field(default_factory=list)
    baseline: Literal["adamw"] | None = None
    budget: Budget = Field(default_factory=Budget)
    reevaluate: Reevaluate = Field(
        default_factory=lambda: Reevaluate(mode="auto"),
        description="Measure the noise: re-run the top_k configs with `seeds` fresh seeds "
        "when the sweep's trials are done. 'auto' (the default) re-runs the top 3 with 3 seeds "
        "when that costs at most the server's LIONSWEEP_REEVALUATE_AUTO_SECONDS of worker "
        "time; 'off' never.",
    )
