"""Operator-registered command tasks: a program the worker runs once per trial.

A command task is registered by the operator of a worker, never by a REST client: a sweep
can only *name* a task, and its params reach the program as data. The registrations live
in a file given with ``lionsweep worker --commands commands.toml`` (TOML, or YAML for a
name ending in ``.yaml``/``.yml``), one table per task::

    [tasks.mlp]
    command = ["python3", "train.py", "--data", "digits"]  # argv, run without a shell
    cwd = "."                 # relative to this file's folder (the default)
    env = { OMP_NUM_THREADS = "1" }                         # added to the worker's own
    timeout = 3600            # seconds a trial may run (default: no limit)
    stop_grace = 10           # seconds between SIGTERM and SIGKILL (default: --stop-grace)

    [tasks.mlp.params]        # optional: the task params a sweep may set, as ParamSpec
    hidden = { type = "int", default = 64, low = 8, high = 4096, role = "width" }
    epochs = { type = "int", default = 10, low = 1, high = 1000, role = "steps" }
    act = { type = "str", default = "relu", choices = ["relu", "gelu"] }

A relative program path (one with a ``/``) is taken from ``cwd``; a bare name is looked up
on ``PATH``. With ``params`` the task is declared like a built-in one: the worker announces
the declarations in its claims, so the server refuses a sweep whose task params break them,
and a trial whose params break them fails at once without starting the program. Without
``params`` the task is undeclared and any task params pass through as data.

Anything wrong in the file stops the worker at start with one line naming the task and
the problem (:class:`CommandConfigError`, exit code ``EXIT_CONFIG``).

For each trial the program gets, besides the worker's environment and the task's ``env``
(:func:`trial_env`): ``LIONSWEEP_SERVER``, ``LIONSWEEP_TOKEN`` (when the worker has one),
``LIONSWEEP_WORKER_ID``, ``LIONSWEEP_TRIAL_ID``, ``LIONSWEEP_SEED``, ``LIONSWEEP_DEVICE``,
``LIONSWEEP_TRIAL_FILE`` (a JSON file holding the claim's assignment exactly as the server
sent it), ``LIONSWEEP_PARAM_<NAME>`` per trial param (``lr``, ``weight_decay``, …) and
``LIONSWEEP_TASK_PARAM_<NAME>`` per task param (declared defaults filled in), names
upper-cased, values as JSON text (``0.0003``, ``true``, ``"gelu"``). A Python program reads
them with ``lionsweep.current_trial()``; any other reports through the stdout line
protocol of :mod:`worker.command_runner`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.yaml_schema import config_loader
from worker.tasks import ParamSpec, check_values, role_problem

#: The keys a task's table may hold.
TASK_KEYS = ("command", "cwd", "env", "params", "stop_grace", "timeout")
#: The keys a param declaration may hold (the fields of :class:`worker.tasks.ParamSpec`).
PARAM_KEYS = ("choices", "default", "high", "low", "role", "type", "width")
#: Task names as the server accepts them in a sweep.
_TASK_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")
#: Param and environment names: they become environment variable names.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Environment variables the worker sets for each trial (a task's ``env`` may not).
RESERVED_ENV = (
    "LIONSWEEP_SERVER",
    "LIONSWEEP_TOKEN",
    "LIONSWEEP_WORKER_ID",
    "LIONSWEEP_TRIAL_ID",
    "LIONSWEEP_TRIAL_FILE",
    "LIONSWEEP_SEED",
    "LIONSWEEP_DEVICE",
)
PARAM_PREFIX = "LIONSWEEP_PARAM_"
TASK_PARAM_PREFIX = "LIONSWEEP_TASK_PARAM_"


class CommandConfigError(ValueError):
    """The command config cannot be used; the message is one line naming the entry."""


@dataclass(frozen=True)
class CommandTask:
    """One registered command: its argv (program resolved), folder, env and limits.

    ``specs`` is ``None`` for an undeclared task; ``stop_grace`` ``None`` means the
    worker's ``--stop-grace``.
    """

    name: str
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    specs: Mapping[str, ParamSpec] | None = None
    timeout: float | None = None
    stop_grace: float | None = None

    def announce(self) -> dict[str, dict[str, Any]] | None:
        """The param declarations a claim announces, or ``None`` for an undeclared task."""
        if self.specs is None:
            return None
        return {k: spec.as_json() for k, spec in sorted(self.specs.items())}

    def task_params(self, assignment: Mapping[str, Any]) -> dict[str, Any]:
        """The trial's task params with declared defaults filled in; raises
        :class:`worker.tasks.InvalidParams` when they break the declaration."""
        given = dict((assignment.get("task") or {}).get("params") or {})
        if self.specs is None:
            return given
        check_values("task params", self.specs, given)
        return {**{k: s.default for k, s in self.specs.items()}, **given}

    def grace(self, default: float) -> float:
        """Seconds between SIGTERM and SIGKILL when the program is stopped."""
        return default if self.stop_grace is None else self.stop_grace


def _kind(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "table"}.get(
        type(value), type(value).__name__
    )


def _seconds(task: str, key: str, value: Any, *, positive: bool) -> float:
    """A finite number of seconds (> 0 with ``positive``, else ≥ 0)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        rule = "> 0" if positive else "≥ 0"
        raise CommandConfigError(
            f"task {task!r}: {key} must be a finite number of seconds {rule}, not {value!r}"
        )
    return float(value)


def _argv(task: str, value: Any) -> list[str]:
    if value is None:
        raise CommandConfigError(f'task {task!r}: no command (an argv list, e.g. ["./train"])')
    if not isinstance(value, list):
        raise CommandConfigError(
            f"task {task!r}: command must be a list of strings (argv, run without a shell), "
            f"not {_kind(value)} {value!r}"
        )
    if not value or not all(isinstance(a, str) for a in value) or not value[0]:
        raise CommandConfigError(
            f"task {task!r}: command must be a non-empty list of strings, not {value!r}"
        )
    return list(value)


def _cwd(task: str, value: Any, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise CommandConfigError(f"task {task!r}: cwd must be a path, not {value!r}")
    cwd = (base / value).resolve()
    if not cwd.is_dir():
        raise CommandConfigError(f"task {task!r}: cwd {str(cwd)!r} is not a directory")
    return cwd


def _env(task: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise CommandConfigError(f"task {task!r}: env must be a table of names to strings")
    env = {}
    for name, text in value.items():
        if not _IDENTIFIER.match(name):
            raise CommandConfigError(f"task {task!r}: env name {name!r} is not a valid name")
        if name in RESERVED_ENV or name.startswith((PARAM_PREFIX, TASK_PARAM_PREFIX)):
            raise CommandConfigError(
                f"task {task!r}: env {name} is set by the worker for each trial"
            )
        if isinstance(text, bool) or not isinstance(text, str | int | float):
            raise CommandConfigError(
                f"task {task!r}: env {name} must be a string, not {_kind(text)} {text!r}"
            )
        env[name] = str(text)
    return env


def _program(task: str, argv: list[str], cwd: Path, env: Mapping[str, str]) -> str:
    """The absolute path of ``argv[0]``: from ``cwd`` when it holds a ``/``, else on PATH."""
    program = argv[0]
    if "/" in program:
        path = Path(os.path.abspath(cwd / program))  # a symlink (a venv's python) stays one
        if not path.is_file():
            raise CommandConfigError(f"task {task!r}: program {program!r} not found in {cwd}")
    else:
        found = shutil.which(program, path=env.get("PATH", os.environ.get("PATH", os.defpath)))
        if found is None:
            raise CommandConfigError(f"task {task!r}: program {program!r} not found on PATH")
        path = Path(os.path.abspath(found))
    if not os.access(path, os.X_OK):
        raise CommandConfigError(f"task {task!r}: program {str(path)!r} is not executable")
    return str(path)


def _known_keys(where: str, table: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise CommandConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")


def _specs(task: str, value: Any) -> dict[str, ParamSpec]:
    if not isinstance(value, dict):
        raise CommandConfigError(f"task {task!r}: params must be a table of param declarations")
    specs = {}
    for name, declared in value.items():
        where = f"task {task!r}: param {name!r}"
        if not _IDENTIFIER.match(name):
            raise CommandConfigError(f"{where}: a param name is letters, digits and _")
        if not isinstance(declared, dict):
            raise CommandConfigError(f'{where}: must be a table like {{ type = "float" }}')
        _known_keys(where, declared, PARAM_KEYS)
        if "type" not in declared:
            raise CommandConfigError(f"{where}: no type (one of int, float, bool, str)")
        try:
            specs[name] = ParamSpec(**declared)
        except (TypeError, ValueError) as exc:
            raise CommandConfigError(f"{where}: {exc}") from None
    problem = role_problem(specs, loop=False)
    if problem:
        raise CommandConfigError(f"task {task!r}: {problem}")
    return specs


def parse_task(name: str, table: Any, base: Path) -> CommandTask:
    """One task's table as a :class:`CommandTask`; ``base`` is the config file's folder."""
    if not _TASK_NAME.match(name):
        raise CommandConfigError(f"task {name!r}: a task name is 1-200 letters, digits and _ . : -")
    if not isinstance(table, dict):
        raise CommandConfigError(f"task {name!r}: must be a table with a command")
    _known_keys(f"task {name!r}", table, TASK_KEYS)
    argv = _argv(name, table.get("command"))
    cwd = _cwd(name, table.get("cwd", "."), base)
    env = _env(name, table.get("env", {}))
    argv[0] = _program(name, argv, cwd, env)
    timeout = table.get("timeout")
    grace = table.get("stop_grace")
    return CommandTask(
        name=name,
        argv=tuple(argv),
        cwd=cwd,
        env=env,
        specs=None if "params" not in table else _specs(name, table["params"]),
        timeout=None if timeout is None else _seconds(name, "timeout", timeout, positive=True),
        stop_grace=None if grace is None else _seconds(name, "stop_grace", grace, positive=False),
    )


def _read(path: Path) -> Any:
    """The file's data (TOML, or YAML by its suffix)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CommandConfigError(f"cannot read it: {exc.strerror or exc}") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.load(text, Loader=config_loader(yaml.SafeLoader))
        except yaml.YAMLError as exc:
            raise CommandConfigError(f"not valid YAML: {' '.join(str(exc).split())}") from None
    if path.suffix != ".toml":
        raise CommandConfigError("a command config is a .toml, .yaml or .yml file")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CommandConfigError(f"not valid TOML: {exc}") from None


def load(path: str | os.PathLike[str]) -> dict[str, CommandTask]:
    """The command tasks registered in the file at ``path``, by name.

    Raises :class:`CommandConfigError` with one line (``<path>: task 'x': problem``) when
    anything in it cannot be used.
    """
    path = Path(path)
    try:
        data = _read(path)
        if not isinstance(data, dict) or set(data) != {"tasks"}:
            extra = sorted(set(data) - {"tasks"}) if isinstance(data, dict) else []
            what = f"unknown key {extra[0]!r}; " if extra else ""
            raise CommandConfigError(f"{what}a command config holds one [tasks.<name>] per task")
        if not isinstance(data["tasks"], dict) or not data["tasks"]:
            raise CommandConfigError("tasks must be a table of one or more [tasks.<name>]")
        base = path.resolve().parent
        return {name: parse_task(name, table, base) for name, table in data["tasks"].items()}
    except CommandConfigError as exc:
        raise CommandConfigError(f"{path}: {exc}") from None


def check_clashes(commands: Mapping[str, CommandTask], task_names: list[str], path: str) -> None:
    """Raise :class:`CommandConfigError` when a command is named like a registered task."""
    for name in commands:
        if name in task_names:
            raise CommandConfigError(
                f"{path}: task {name!r}: clashes with the built-in (or --task-module) task "
                "of that name; rename it"
            )


def _env_name(prefix: str, name: str) -> str | None:
    """``prefix + NAME`` when ``name`` makes a valid variable name, else ``None``."""
    return prefix + name.upper() if _IDENTIFIER.match(name) else None


def trial_env(
    task: CommandTask,
    assignment: Mapping[str, Any],
    task_params: Mapping[str, Any],
    *,
    server: str,
    token: str | None,
    worker_id: str,
    device: str,
    trial_file: Path,
) -> dict[str, str]:
    """The program's environment for one trial (see the module docstring)."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k not in RESERVED_ENV and not k.startswith((PARAM_PREFIX, TASK_PARAM_PREFIX))
    }
    env = {
        **inherited,
        **task.env,
        "LIONSWEEP_SERVER": server,
        "LIONSWEEP_WORKER_ID": worker_id,
        "LIONSWEEP_TRIAL_ID": str(int(assignment["trial_id"])),
        "LIONSWEEP_TRIAL_FILE": str(trial_file),
        "LIONSWEEP_SEED": str(int(assignment.get("seed", 0))),
        "LIONSWEEP_DEVICE": device,
    }
    if token:
        env["LIONSWEEP_TOKEN"] = token
    for prefix, values in (
        (PARAM_PREFIX, assignment.get("params") or {}),
        (TASK_PARAM_PREFIX, task_params),
    ):
        for name, value in values.items():
            key = _env_name(prefix, name)
            if key is not None:
                env[key] = json.dumps(value)
    return env
