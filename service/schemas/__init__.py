"""Pydantic models of the REST API: the sweep spec, trials, the worker protocol."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from optim.scaling import ADAMW_TO_LION_FACTOR, from_adamw
from protocol import HAND_BACK_LIMIT

PARAMS = ("lr", "weight_decay", "lr_wd_product", "beta1", "beta2", "warmup_steps", "batch_size")
INT_PARAMS = ("warmup_steps", "batch_size")
SAMPLERS = ("tpe", "random", "grid", "qmc", "cmaes", "gp")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
STATES = ("complete", "pruned", "failed", "running", "waiting")
SWEEP_STATUSES = ("running", "cancelled", "complete")

INT32_MAX = 2**31 - 1
"""The largest SQL INTEGER (trial ids and numbers, Optuna's intermediate-value steps, counts)."""
SEED_LIMIT = 2**32
"""Seeds must be below this: numpy's RandomState, which Optuna's samplers use, takes 0..2**32-1."""
TREE_MAX_DEPTH = 16
"""How deep free-form data (task params, metrics, configs) may nest."""
TREE_MAX_BYTES = 64 * 1024
"""How large free-form data may be, as compact JSON."""
NUL_MSG = "must not contain NUL characters (\\u0000)"


class Strict(BaseModel):
    """Base for request models: unknown fields, coerced types and non-finite floats are errors.

    Strict: ``true``, ``"5"`` and ``5.0`` are not the integer 5 and ``"3"`` is not a number
    (an integer is still a valid float).
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError(NUL_MSG)
    return text


Text = Annotated[str, AfterValidator(_no_nul)]
"""A string without NUL characters (PostgreSQL cannot store them)."""


class JsonPairs(list):
    """A JSON object as the list of its (key, value) pairs, repeats kept (see ``json_problem``)."""


class JsonProblem(NamedTuple):
    """Where JSON data breaks a rule: the path inside it, an error type, what is wrong."""

    path: tuple[str | int, ...]
    kind: str
    msg: str


def json_problem(value: Any, max_depth: int, *, text_rules: bool = True) -> JsonProblem | None:
    """The first place where JSON-like ``value`` breaks the rules for free-form data, or None.

    Rules: containers nest at most ``max_depth`` deep, floats are finite, keys are unique
    (objects given as :class:`JsonPairs` keep their repeats), and with ``text_rules`` no
    string or key holds a NUL character. The walk is iterative, so no nesting depth can
    exhaust the stack.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        v, path = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            msg = "must be a finite number (not NaN, Infinity or beyond float range)"
            return JsonProblem(path, "finite_number", msg)
        if isinstance(v, str):
            if text_rules and "\x00" in v:
                return JsonProblem(path, "string_nul", NUL_MSG)
            continue
        if isinstance(v, dict | JsonPairs):
            items: Iterator[tuple[Any, Any]] = iter(v.items() if isinstance(v, dict) else v)
        elif isinstance(v, list):
            items = enumerate(v)
        else:
            continue
        if len(path) >= max_depth:
            return JsonProblem(path, "too_deep", f"nests deeper than {max_depth} levels")
        seen: set[Any] = set()
        for k, item in items:
            if isinstance(k, str):
                if k in seen:
                    return JsonProblem(path, "duplicate_key", f"duplicate key {k!r}")
                seen.add(k)
                if text_rules and "\x00" in k:
                    return JsonProblem(path, "string_nul", f"keys {NUL_MSG}")
            stack.append((item, (*path, k)))
    return None


def _bounded_tree(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form data: at most TREE_MAX_DEPTH deep and TREE_MAX_BYTES as JSON; finite; no NUL."""
    problem = json_problem(value, TREE_MAX_DEPTH)
    if problem is not None:
        inside = "".join(f"[{p!r}]" for p in problem.path)
        raise ValueError(f"{inside} {problem.msg}".strip())
    size = len(json.dumps(value, separators=(",", ":")))
    if size > TREE_MAX_BYTES:
        raise ValueError(f"is {size} bytes as JSON; at most {TREE_MAX_BYTES} are allowed")
    return value


JsonTree = Annotated[dict[str, Any], AfterValidator(_bounded_tree)]
"""Free-form JSON data (task params, metrics, configs), bounded in depth and size."""


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

    name: Literal["tpe", "random", "grid", "qmc", "cmaes", "gp"] = "tpe"
    seed: int | None = Field(default=None, ge=0, lt=SEED_LIMIT)


class PrunerSpec(Strict):
    """Which Optuna pruner, with its main knobs."""

    name: Literal["none", "median", "successive_halving", "hyperband"] = "hyperband"
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


# ---- responses -------------------------------------------------------------------------


class Counts(BaseModel):
    """Trials per state (a retried failure counts as failed and its retry separately)."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    handed_back: int = Field(
        default=0,
        description="Trials a worker handed back on shutdown, or a cancel stopped: re-queued "
        "with the same params (not failures, and not in ``failed``).",
    )
    imported: int = Field(
        default=0,
        description="Trials imported from runs made elsewhere (counted in their states above, "
        "not in the sweep's n_trials budget).",
    )


class BestSoFar(BaseModel):
    """The config /best ranks first, with its value as /best estimates it; the best single
    run apart (after re-evaluation often a lucky seed, and labelled as such)."""

    trial_number: int = Field(description="The config's first trial.")
    value: float = Field(description="The same as mean.")
    params: dict[str, Any]
    mean: float | None = Field(
        default=None,
        description="The config's value as /best estimates it: the mean of its runs that took "
        "no part in ranking it (its one run when it ran once).",
    )
    n_seeds: int = Field(default=1, description="How many runs mean is over.")
    ci: list[float] | None = Field(
        default=None, description="90% interval of mean (None while the noise is unmeasured)."
    )
    held_out: bool = Field(
        default=False, description="mean is over runs that took no part in ranking the configs."
    )
    best_single_value: float | None = Field(
        default=None,
        description="The best value any single run reached (lowest when minimizing, highest "
        "when maximizing): one seed, not the config's value.",
    )
    best_single_trial_number: int | None = Field(
        default=None, description="The trial of best_single_value."
    )


class SweepOut(BaseModel):
    """A sweep with its progress."""

    id: int
    name: str
    status: Literal["running", "complete", "cancelled"]
    task: TaskRef
    spec: dict[str, Any]
    n_trials: int
    counts: Counts
    finished: int
    progress: float
    best: BestSoFar | None
    created_at: datetime | None
    updated_at: datetime | None
    study_name: str
    task_announced: bool
    activity: str = Field(
        description="What the sweep is doing, in words: its status, or ``waiting for a worker "
        "with task 'X'`` while it runs and no worker has announced its task."
    )
    warnings: list[str]
    eta_seconds: float | None
    reevaluation: ReevaluationOut | None = None
    ladder_id: int | None = None
    ladder_role: Literal["rung", "confirm"] | None = None


class SweepPage(BaseModel):
    """One page of sweeps."""

    items: list[SweepOut]
    total: int
    offset: int
    limit: int


class TrialOut(BaseModel):
    """One trial of a sweep, as Optuna stores it plus our attributes."""

    number: int
    trial_id: int
    state: Literal["complete", "pruned", "failed", "running", "waiting"]
    value: float | None
    params: dict[str, Any]
    intermediate_values: dict[str, float]
    metrics: dict[str, Any]
    config: dict[str, Any]
    reason: str | None
    worker_id: str | None
    datetime_start: datetime | None
    datetime_complete: datetime | None
    duration_seconds: float | None
    retry_of: int | None
    reevaluation_of: int | None = None
    handed_back: bool = Field(
        default=False,
        description="A failed trial its worker handed back on shutdown, or a cancel stopped: "
        "re-queued with the same params, not a failure (counted in ``counts.handed_back``).",
    )
    imported: bool = Field(
        default=False,
        description="A run made elsewhere, brought in by ``POST /api/sweeps/{id}/trials:import`` "
        "(its times say when it was imported; its duration is unknown).",
    )
    import_source: str | None = Field(
        default=None,
        description="Where an imported trial came from: ``file row N`` (and the run's name).",
    )
    diverged: bool = Field(
        default=False,
        description="An imported run marked diverged (``reason`` is ``diverged``).",
    )

    @field_validator("datetime_start", "datetime_complete")
    @classmethod
    def _zoned(cls, dt: datetime | None) -> datetime | None:
        """Optuna stores naive local times of the server process: attach that zone."""
        return dt.astimezone() if dt is not None and dt.tzinfo is None else dt


class TrialPage(BaseModel):
    """One page of trials."""

    items: list[TrialOut]
    total: int
    offset: int
    limit: int


class OptimizerKwargs(BaseModel):
    """Ready-to-use optimizer keyword arguments."""

    lr: float | None
    betas: list[float | None]
    weight_decay: float | None


class ConfigOut(BaseModel):
    """A config ready to use, with its value averaged over the seeds it ran with."""

    trial_number: int = Field(description="The config's first trial.")
    value: float = Field(description="The same as mean.")
    mean: float = Field(
        description="Mean over the config's held-out runs (those that took no part in ranking "
        "it: the later half of a re-evaluated config's fresh seeds), else over its one run; "
        "see BestOut.method."
    )
    n_seeds: int = Field(description="How many runs mean is over.")
    sd: float | None = Field(description="This config's own sd over its seeds (n_seeds >= 2).")
    ci: list[float] | None = Field(
        description="90% interval of the mean, from the sweep's pooled seed noise (None while "
        "the noise is unmeasured)."
    )
    values: list[float]
    trial_numbers: list[int]
    selection_value: float | None = Field(
        description="The value of the run that selected the config, when left out of the mean."
    )
    confirmed: bool = Field(description="Re-run with at least 2 fresh seeds.")
    held_out: bool = Field(
        default=False,
        description="mean, values and trial_numbers are over runs that took no part in ranking "
        "the configs, so the mean is not biased by the ranking; false for a config that ran "
        "once (its value is the run that ranked it).",
    )
    ranked_on: list[int] = Field(
        default_factory=list, description="Trial numbers of the runs the ranking used."
    )
    rank_value: float | None = Field(
        default=None,
        description="Mean of the ranked_on runs: what the configs are ordered by (biased by the "
        "selection; not an estimate of the config's value).",
    )
    optimizer: Literal["lion", "adamw"]
    optimizer_kwargs: OptimizerKwargs
    warmup_steps: int | None
    batch_size: int | None
    params: dict[str, Any]


class ReevaluationOut(BaseModel):
    """Where the re-evaluation of the leading configs stands."""

    status: Literal["off", "pending", "queued", "done", "skipped"]
    top_k: int | None = None
    seeds: int | None = None
    trials: int = 0
    finished: int = 0
    reason: str | None = None


class BestOut(BaseModel):
    """The best config and the top k, ranked on some runs and valued on the others (so the
    winner's value is not biased by the ranking), with the sweep's seed noise."""

    best: ConfigOut
    top: list[ConfigOut]
    noise_sd: float | None = Field(
        description="Seed-to-seed sd of the objective, pooled over repeated configs."
    )
    noise_df: int = Field(description="Degrees of freedom of noise_sd (0: unmeasured).")
    tied: list[int] = Field(
        description="Trial numbers of the configs in top that the data cannot tell apart from "
        "the best (the 90% interval of their difference includes 0), the best's own included."
    )
    note: str
    reevaluation: ReevaluationOut
    method: str = Field(
        default="",
        description="How configs are ranked and valued on disjoint runs, and the intervals.",
    )


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


class ParamDeclaration(Strict):
    """One task param a worker declares: its type, inclusive bounds or choices, and default."""

    type: Literal["int", "float", "bool", "str"]
    default: int | float | bool | Text | None = None
    low: int | float | None = None
    high: int | float | None = None
    choices: list[int | float | bool | Text] | None = Field(default=None, max_length=1000)
    width: bool = Field(default=False, description="This param is the model's width.")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> ParamDeclaration:
        """low <= high when both are given."""
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low must be <= high (got {self.low} > {self.high})")
        return self


def _declarations(value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each task's param declarations are ParamDeclarations (kept as plain dicts to store)."""
    for task, params in value.items():
        if not isinstance(params, dict):
            raise ValueError(f"[{task!r}] must map param names to declarations")
        for name, declared in params.items():
            try:
                ParamDeclaration.model_validate(declared)
            except ValidationError as e:
                first = e.errors()[0]
                where = "".join(f"[{p!r}]" for p in (task, name, *first["loc"]))
                raise ValueError(f"{where} {first['msg']}") from None
    return value


class ClaimRequest(Strict):
    """What a worker can run."""

    worker_id: Text = Field(min_length=1, max_length=200)
    device: Text = Field(default="cpu", max_length=100)
    tasks: list[Annotated[Text, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=200
    )
    task_defaults: dict[str, JsonTree] = Field(
        default_factory=dict,
        max_length=200,
        description="Accepted but not stored: a trial's finish reports the config it ran with.",
    )
    task_params: Annotated[dict[str, JsonTree], AfterValidator(_declarations)] = Field(
        default_factory=dict,
        max_length=200,
        description="The params each task accepts, ``{task: {param: {type, default, low, high, "
        "choices}}}``: a submitted sweep's task params are checked against them.",
    )
    request_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:\-]+$",
        description="Made by the client per claim and sent again on retries of that claim: "
        "the same id returns the same assignment, never a second trial.",
    )
    sweeps: list[Annotated[int, Field(ge=0, le=INT32_MAX)]] | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Claim only from these sweeps (ids); left out, from any running sweep "
        "whose task the worker runs. An id that names no running sweep gives nothing (204).",
    )


class Assignment(BaseModel):
    """A claimed trial: everything a worker needs to run it."""

    sweep_id: int
    trial_id: int
    trial_number: int
    params: dict[str, Any]
    task: TaskRef
    objective: Objective
    budget: Budget
    seed: int
    heartbeat_interval: float


class FromHolder(Strict):
    """A call about a claimed trial, signed with the claimant's worker id (a call from any
    other worker is refused with 409; unsigned calls are taken, for older workers)."""

    worker_id: Text | None = Field(default=None, min_length=1, max_length=200)


class ReportRequest(FromHolder):
    """An intermediate value at a step (also a heartbeat)."""

    step: int = Field(ge=0, le=INT32_MAX)
    value: float
    metrics: JsonTree = Field(default_factory=dict)


class ActionOut(BaseModel):
    """What the worker should do next."""

    action: Literal["continue", "prune", "stop"]


class FinishRequest(FromHolder):
    """How a trial ended."""

    state: Literal["complete", "pruned", "failed"]
    value: float | None = None
    metrics: JsonTree = Field(default_factory=dict)
    config: JsonTree = Field(default_factory=dict)
    reason: Text | None = Field(default=None, max_length=2000)
    handed_back: bool = Field(
        default=False,
        description="With ``failed``: an interrupt (Ctrl-C, SIGTERM) stopped the trial, which "
        "is re-queued with the same params without using up a retry — at most "
        f"{HAND_BACK_LIMIT} times per config, then it counts as a failure.",
    )

    @model_validator(mode="after")
    def _value_rules(self) -> FinishRequest:
        """A complete trial needs a value (finite, as every float of a request); only a failed
        trial can be handed back."""
        if self.state == "complete" and self.value is None:
            raise ValueError("value: a complete trial needs a finite value")
        if self.handed_back and self.state != "failed":
            raise ValueError("handed_back: only a failed trial can be handed back")
        return self


class FinishOut(BaseModel):
    """The recorded end of a trial."""

    trial_id: int
    state: Literal["complete", "pruned", "failed"]
    requeued: bool


class TokenOut(BaseModel):
    """An API token as listed (never its secret or hash)."""

    id: int
    name: str | None
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class HeartbeatRequest(FromHolder):
    """A heartbeat (its body may be empty)."""


class AnalyticRuleOut(BaseModel):
    """The analytic Lion rule (width/sigma or AdamW conversion)."""

    lr: float
    weight_decay: float
    product: float
    sigma: float | None = None
    alpha0: float | None = None
    factor: float | None = None


# ---- ladders -----------------------------------------------------------------------------


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


# ---- importing runs made elsewhere ---------------------------------------------------------

IMPORT_COLUMNS = (
    "lr",
    "weight_decay",
    "beta1",
    "beta2",
    "betas",
    "warmup_steps",
    "batch_size",
    "seed",
    "optimizer",
    "value",
    "state",
    "name",
)
"""The columns an imported row may have (after ``mapping``)."""
IMPORT_STATES = ("complete", "diverged", "failed")
IMPORT_MAX_ROWS = 1000
"""The most rows one import may bring in: it is one transaction, and Optuna writes a trial in
about 25 ms on SQLite, where the transaction holds the write lock that workers wait on."""


class TrialImport(Strict):
    """Finished runs made elsewhere, to add to a sweep as trials (all or nothing).

    Either ``rows`` (JSON objects, ``format: rows``) or ``text``: the content of a CSV file
    (``csv``), of a JSON-lines file (``jsonl``) or of a W&B runs-table CSV export (``wandb``).
    """

    format: Literal["rows", "csv", "jsonl", "wandb"] = "rows"
    rows: list[dict[str, Any]] | None = Field(default=None, max_length=IMPORT_MAX_ROWS)
    text: Text | None = None
    mapping: dict[str, Literal[IMPORT_COLUMNS]] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        max_length=100,
        description='Source column → import column, e.g. ``{"summary.val_loss": "value"}`` '
        "(nested JSON objects are flattened to ``a.b`` names first).",
    )
    ignore: list[Text] = Field(
        default_factory=list,
        max_length=1000,
        description="Source columns to leave out (a W&B export leaves out unknown ones anyway).",
    )
    states: dict[str, Literal["complete", "diverged", "failed", "skip"]] = Field(
        default_factory=dict,
        max_length=100,
        description="Source state → import state (``skip``: leave such rows out). A W&B "
        "export's states default to finished → complete; crashed, failed, killed → failed.",
    )
    source: Text | None = Field(
        default=None, max_length=200, description="A name for where the runs come from."
    )

    @model_validator(mode="after")
    def _rows_or_text(self) -> TrialImport:
        """``rows`` with format ``rows``; ``text`` with the file formats."""
        if self.format == "rows" and (self.rows is None or self.text is not None):
            raise ValueError("format 'rows' needs rows (a list of objects) and no text")
        if self.format != "rows" and (self.text is None or self.rows is not None):
            raise ValueError(f"format {self.format!r} needs text (the file's content) and no rows")
        return self


class ImportOut(BaseModel):
    """What an import added to a sweep."""

    sweep_id: int
    imported: int = Field(description="Trials added (complete + diverged + failed).")
    complete: int
    diverged: int
    failed: int
    skipped: int = Field(description="Rows left out by a ``skip`` state mapping.")
    trial_numbers: list[int]
    ignored_columns: list[str] = Field(
        description="Source columns that were left out (asked for, or unknown in a W&B export)."
    )
