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

Besides its own ``defaults.params``, every task accepts ``steps`` and ``eval_every`` in a
sweep's ``task.params`` (the harness's loop settings).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "lionsweep.tasks"
BUILTIN_MODULES = ("worker.tasks.quadratic", "worker.tasks.digits", "worker.tasks.charlm")


@dataclass(frozen=True)
class TaskDefaults:
    """A task's defaults, used where a trial's config leaves a value out."""

    warmup_steps: int = 0
    batch_size: int = 32
    max_micro_batch: int = 32
    steps: int = 100
    eval_every: int = 10
    params: dict[str, Any] = field(default_factory=dict)

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
    """Register the built-in tasks (quadratic, digits, charlm)."""
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
