"""The bodies of the worker protocol: claim (with the task params a worker declares) and its
assignment, report and heartbeat with the action that answers them, finish and its record."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator

from protocol import HAND_BACK_LIMIT
from service.schemas.common import INT32_MAX, Strict, Text
from service.schemas.json_rules import JsonTree
from service.schemas.sweep_spec import Budget, Objective, TaskRef


class ParamDeclaration(Strict):
    """One task param a worker declares: its type, inclusive bounds or choices, and default."""

    type: Literal["int", "float", "bool", "str"]
    default: int | float | bool | Text | None = None
    low: int | float | None = None
    high: int | float | None = None
    choices: list[int | float | bool | Text] | None = Field(default=None, max_length=1000)
    width: bool = Field(
        default=False, description="This param is the model's width (the same as role width)."
    )
    role: Literal["width", "steps", "batch"] | None = Field(
        default=None,
        description="The scale axis this number is, for ladders: width (the model's width), "
        "steps (training length) or batch (batch size).",
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> ParamDeclaration:
        """low <= high when both are given; a role is a number's; width: true is role width."""
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low must be <= high (got {self.low} > {self.high})")
        if self.width and self.role not in (None, "width"):
            raise ValueError(f"width: true is the width role, not {self.role!r}")
        if (self.role or self.width) and self.type not in ("int", "float"):
            raise ValueError(f"a param with a role is a number, not {self.type}")
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


class HeartbeatRequest(FromHolder):
    """A heartbeat (its body may be empty)."""
