"""The read models of the API: a sweep with its progress and leader, pages of sweeps and
trials, the best configs with their seed noise (/best), the re-evaluation's state, and an
API token as listed."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from service.schemas.sweep_spec import TaskRef


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
    ladder_role: Literal["rung", "confirm", "target"] | None = None


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
    trials: int = Field(
        default=0,
        description="The re-run trials queued; while pending, those planned (top_k configs, at "
        "most the sweep's n_trials, times seeds).",
    )
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


class TokenOut(BaseModel):
    """An API token as listed (never its secret or hash)."""

    id: int
    name: str | None
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
