"""Task registry: the training problems a worker knows how to run.

Tasks are registered on the worker side only: the built-ins below, the operator's own
through the entry-point group ``lionsweep.tasks``, or modules named with
``--task-module``. A trial assignment only *names* a task; the worker looks the name
up here and never imports anything because a REST client asked it to.

A task is an object with a ``name``, ``defaults`` (:class:`TaskDefaults`) and the
functions the harness (``worker.harness``) calls:

- ``data(params, device)`` → whatever the task needs (cache it per process);
- ``make_model(params, data, device)`` → a ``torch.nn.Module``;
- ``batches(params, data, batch_size, generator)`` → an endless iterator of logical
  batches, each a tuple of tensors with the batch on dimension 0 (the harness splits
  it into micro-batches for gradient accumulation);
- ``loss(model, batch)`` → the mean loss over the (micro-)batch, a scalar tensor;
- ``evaluate(model, params, data)`` → ``{"val_loss": ..., ...}`` with the objective metric.

Besides its own ``defaults.params``, every task accepts the harness's settings
(:data:`LOOP_PARAMS`) in a sweep's ``task.params``: ``steps``, ``eval_every`` and
``decay_all`` (weight decay on every parameter instead of only on matrices, see
``worker.harness.make_optimizer``).

A task declares the params it accepts with ``TaskDefaults(specs={name: ParamSpec(...)})``:
type, bounds or choices, default. The harness checks a trial's task params against the
declaration before it builds anything (:func:`check_params`), and the worker announces the
declarations in its claims (:func:`announce_params`) so the server can refuse a sweep no
worker would run. The loop params are declared for every declaring task
(:data:`LOOP_PARAM_SPECS`, defaults from ``TaskDefaults``). A task without ``specs`` (an
operator's own, written before declarations existed) is not checked beyond unknown names.

A declared number may carry a scale role (:data:`ROLES`), which ladders vary: ``width``
(the model's width: charlm's ``d_model``, digits' ``hidden``; ``width=True`` is the same as
``role="width"``), ``steps`` (training length: the loop param ``steps`` of every declaring
task) or ``batch`` (a task's own batch param; otherwise a ladder's batch axis is the
harness's ``batch_size``, which every task honours). At most one param per role.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "lionsweep.tasks"
BUILTIN_MODULES = (
    "worker.tasks.quadratic",
    "worker.tasks.digits",
    "worker.tasks.charlm",
    "worker.tasks.planted",
)
#: The param types a :class:`ParamSpec` can declare (JSON's, less null, list and object).
PARAM_TYPES = ("int", "float", "bool", "str")
#: Harness-level settings that any task accepts in its ``task.params``.
LOOP_PARAMS = ("steps", "eval_every", "decay_all")
#: The scale roles a declared number may carry (what a ladder varies along an axis).
ROLES = ("width", "steps", "batch")


def _kind(value: Any) -> str:
    """The JSON-ish type name of ``value`` for messages (``bool`` before ``int``)."""
    if value is None:
        return "null"
    for name, cls in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if isinstance(value, cls):
            return name
    return type(value).__name__


@dataclass(frozen=True)
class ParamSpec:
    """One param a task accepts: its type, inclusive bounds or choices, and default.

    Values are never coerced: ``True`` is not an int, ``"3"`` is not 3, NaN and ±inf are
    refused; an int is accepted where a float is declared (JSON writes 100.0 as 100). A
    param whose ``default`` is ``None`` also accepts ``None`` (it means "off").
    ``role`` marks a number a ladder may vary (:data:`ROLES`); ``width=True`` is an alias
    of ``role="width"``.
    """

    type: str
    default: Any = None
    low: int | float | None = None
    high: int | float | None = None
    choices: tuple[Any, ...] | None = None
    width: bool = False
    role: str | None = None

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"param type must be one of {PARAM_TYPES}, not {self.type!r}")
        if not isinstance(self.width, bool):
            raise ValueError(f"width must be True or False, not {self.width!r}")
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {self.role!r}")
        if self.width and self.role not in (None, "width"):
            raise ValueError(f"width=True is the width role, not {self.role!r}")
        if self.width:
            object.__setattr__(self, "role", "width")
        if self.role == "width":
            object.__setattr__(self, "width", True)
        if self.role is not None and self.type not in ("int", "float"):
            raise ValueError(f"a {self.role} is a number, not {self.type}")
        if (self.low is not None or self.high is not None) and self.type not in ("int", "float"):
            raise ValueError(f"low/high bound numbers, not {self.type}")
        for bound in (self.low, self.high):
            if bound is not None and self._type_problem(bound) is not None:
                raise ValueError(f"bound {bound!r} is not a finite {self.type}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
            bad = [c for c in self.choices if self._type_problem(c) is not None]
            if not self.choices or bad:
                raise ValueError(f"choices must be a non-empty list of {self.type}s")
        problem = self.problem(self.default)
        if problem is not None:
            raise ValueError(f"default {self.default!r}: {problem}")

    def _type_problem(self, value: Any) -> str | None:
        kind = _kind(value)
        if kind != self.type and not (self.type == "float" and kind == "int"):
            return f"must be {self.type}, not {kind} {value!r}"
        if kind == "float" and not math.isfinite(value):
            return f"must be finite, not {value!r}"
        return None

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (the rule it breaks), or ``None`` if it is valid."""
        if value is None:
            return None if self.default is None else f"must be {self.type}, not null"
        problem = self._type_problem(value)
        if problem is not None:
            return problem
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(map(repr, self.choices))}, not {value!r}"
        if self.low is not None and value < self.low:
            return f"must be at least {self.low}, not {value!r}"
        if self.high is not None and value > self.high:
            return f"must be at most {self.high}, not {value!r}"
        return None

    def as_json(self) -> dict[str, Any]:
        """``{"type", "low", "high", "choices", "default"}`` as plain JSON values, with
        ``"role"`` added for a param with a role (and ``"width": true`` for the width)."""
        choices = None if self.choices is None else list(self.choices)
        declared = {
            "type": self.type,
            "low": self.low,
            "high": self.high,
            "choices": choices,
            "default": self.default,
        }
        if self.role is not None:
            declared["role"] = self.role
        if self.width:
            declared["width"] = True
        return declared


#: The loop params as every declaring task accepts them (default: its ``TaskDefaults``').
LOOP_PARAM_SPECS = {
    "steps": ParamSpec("int", default=1, low=1, high=10_000_000, role="steps"),
    "eval_every": ParamSpec("int", default=1, low=1, high=10_000_000),
    "decay_all": ParamSpec("bool", default=False),
}


def role_problem(specs: Mapping[str, ParamSpec], loop: bool = True) -> str | None:
    """Why ``specs`` break "at most one param per role", or None; with ``loop`` (a task the
    harness trains) the loop param ``steps`` counts as the steps role."""
    every = {**LOOP_PARAM_SPECS, **specs} if loop else dict(specs)
    for role in ROLES:
        names = sorted(k for k, v in every.items() if v.role == role)
        if len(names) > 1:
            return f"at most one param is the {role}, not {names}"
    return None


class InvalidParams(ValueError):
    """A trial's params break their declaration: the submitter's error, not the worker's."""

    def __init__(self, what: str, problems: dict[str, str]) -> None:
        self.problems = problems
        rules = "; ".join(f"{name}: {rule}" for name, rule in problems.items())
        super().__init__(f"invalid {what}: {rules}")


def check_values(what: str, specs: Mapping[str, ParamSpec], values: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidParams` (``invalid {what}: name: rule; …``) unless every value
    is declared in ``specs`` and keeps to its rule."""
    problems = {}
    for name in sorted(values):
        spec = specs.get(name)
        if spec is None:
            problems[name] = f"unknown param (known: {', '.join(sorted(specs)) or 'none'})"
        else:
            problem = spec.problem(values[name])
            if problem is not None:
                problems[name] = problem
    if problems:
        raise InvalidParams(what, problems)


@dataclass(frozen=True)
class TaskDefaults:
    """A task's defaults, used where a trial's config leaves a value out.

    ``specs`` declares the task's own params (see :class:`ParamSpec`); ``params`` then
    defaults to the specs' defaults, and when both are given they must agree. ``None``
    (the default) leaves the task undeclared: its params are not checked. ``decay_all``
    is the default of the loop param of that name (decay biases and gains too).
    """

    warmup_steps: int = 0
    batch_size: int = 32
    max_micro_batch: int = 32
    steps: int = 100
    eval_every: int = 10
    params: dict[str, Any] = field(default_factory=dict)
    specs: Mapping[str, ParamSpec] | None = None
    decay_all: bool = False

    def __post_init__(self) -> None:
        if self.specs is None:
            return
        problem = role_problem(self.specs)
        if problem:
            raise ValueError(problem)
        own = {k: v for k, v in self.specs.items() if k not in LOOP_PARAMS}
        if not self.params:
            object.__setattr__(self, "params", {k: v.default for k, v in own.items()})
        mismatched = sorted(
            (set(own) ^ set(self.params))
            | {k for k in own if k in self.params and own[k].default != self.params[k]}
        )
        if mismatched:
            raise ValueError(f"params and specs disagree on {mismatched}")
        for name in LOOP_PARAMS:
            if name in self.specs and self.specs[name].default != getattr(self, name):
                raise ValueError(f"the {name} spec's default is not TaskDefaults.{name}")

    def param_specs(self) -> dict[str, ParamSpec] | None:
        """Every declared param, loop params included; ``None`` for an undeclared task."""
        if self.specs is None:
            return None
        loop = {k: replace(v, default=getattr(self, k)) for k, v in LOOP_PARAM_SPECS.items()}
        return {**loop, **self.specs}

    def announce(self) -> dict[str, int]:
        """The defaults a worker announces in its claim (``task_defaults``)."""
        return {"warmup_steps": self.warmup_steps, "batch_size": self.batch_size}


@runtime_checkable
class Task(Protocol):
    """What the harness needs from a task (see the module docstring)."""

    name: str
    defaults: TaskDefaults

    def data(self, params: dict[str, Any], device: Any) -> Any:
        """Load (or return the cached) training and validation data on ``device``."""
        ...

    def make_model(self, params: dict[str, Any], data: Any, device: Any) -> Any:
        """A freshly initialised ``torch.nn.Module`` for these params, on ``device``."""
        ...

    def batches(self, params: dict[str, Any], data: Any, batch_size: int, generator: Any) -> Any:
        """An endless iterator of training batches (tuples of tensors) in seeded order."""
        ...

    def loss(self, model: Any, batch: Any) -> Any:
        """The mean training loss of ``model`` on ``batch`` (a scalar tensor)."""
        ...

    def evaluate(self, model: Any, params: dict[str, Any], data: Any) -> dict[str, float]:
        """Validation metrics, including the sweep's objective metric."""
        ...


_REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add ``task`` (an instance, or a class that is instantiated) to the registry."""
    if inspect.isclass(task):
        task = task()
    if not isinstance(task, Task):
        raise TypeError(f"{task!r} is not a task: it needs name, defaults and the task functions")
    if not isinstance(task.name, str) or not task.name:
        raise ValueError(f"task {task!r} has no name")
    if not isinstance(task.defaults, TaskDefaults):
        raise TypeError(f"task {task.name!r}: defaults must be a TaskDefaults")
    previous = _REGISTRY.get(task.name)
    if previous is not None and previous is not task:
        log.warning("task %r registered again; the later registration wins", task.name)
    _REGISTRY[task.name] = task
    return task


def get(name: str) -> Task:
    """The registered task called ``name``; ``KeyError`` if this worker has none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"task {name!r} is not registered on this worker") from None


def names() -> list[str]:
    """Names of all registered tasks, sorted."""
    return sorted(_REGISTRY)


def check_params(task: Task, params: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidParams` (``invalid task params: …``) when ``params`` (loop
    params included) break ``task``'s declaration; an undeclared task passes."""
    specs = task.defaults.param_specs()
    if specs is not None:
        check_values("task params", specs, params)


def announce_params(task_names: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{task: {param: spec JSON}}`` for the declaring tasks among ``task_names``."""
    announced = {}
    for name in task_names:
        specs = get(name).defaults.param_specs()
        if specs is not None:
            announced[name] = {k: spec.as_json() for k, spec in sorted(specs.items())}
    return announced


def resolve_params(task: Task, params: dict[str, Any] | None) -> dict[str, Any]:
    """The task's default params overlaid with ``params``; unknown keys raise ``ValueError``."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(task.defaults.params))
    if unknown:
        known = ", ".join(sorted(task.defaults.params)) or "none"
        raise ValueError(f"task {task.name!r}: unknown params {unknown} (known: {known})")
    return {**task.defaults.params, **params}


def _register_loaded(obj: Any, origin: str) -> None:
    if inspect.ismodule(obj):
        return  # importing the module registered its tasks
    if isinstance(obj, list | tuple):
        for item in obj:
            register(item)
        return
    if inspect.isclass(obj) or isinstance(obj, Task):
        register(obj)
        return
    if callable(obj):
        _register_loaded(obj(), origin)
        return
    raise TypeError(f"{origin}: {obj!r} is not a task, task class, list of tasks or module")


def load_builtins() -> None:
    """Register the built-in tasks (quadratic, digits, charlm, planted)."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def load_entry_points() -> list[str]:
    """Register tasks from installed packages' ``lionsweep.tasks`` entry points."""
    loaded = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        _register_loaded(ep.load(), f"entry point {ep.name} = {ep.value}")
        loaded.append(ep.name)
    return loaded


def load_modules(modules: list[str]) -> None:
    """Import each operator-named module (``--task-module``); importing registers its tasks."""
    for module in modules:
        importlib.import_module(module)


def load_all(modules: list[str] | None = None) -> list[str]:
    """Register built-ins, entry points and ``modules``; return the registered names."""
    load_builtins()
    load_entry_points()
    load_modules(list(modules or []))
    return names()
