"""The worker's side of the ``lionsweep`` command line, and what every command shares.

``app`` holds the ``worker`` command (the top-level ``lionsweep`` app in ``lionsweep.cli``
composes it). The rest is the one place where a command builds an API client
(:func:`make_client`, on :class:`worker.client.Client`) and turns its errors into one line
and an exit code (:func:`api_errors`, :func:`fail`): ``EXIT_REFUSED`` (1) for an answer
the server refused, ``EXIT_CONFIG`` (2) for a server that cannot be reached or input that
cannot be used. Only the worker's own dependencies are imported, so a GPU node without the
server's packages runs all of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from protocol import DEFAULT_SERVER, server_url_problem
from worker import DEFAULT_CONNECT_TIMEOUT, DEFAULT_STOP_GRACE, EXIT_CONFIG, EXIT_REFUSED
from worker.client import ApiError, Client, ServerUnreachable

console = Console()
err_console = Console(stderr=True)

ServerOpt = Annotated[
    str, typer.Option("--server", envvar="LIONSWEEP_SERVER", help="API base URL.")
]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="LIONSWEEP_TOKEN", help="Bearer token.")
]

app = typer.Typer(pretty_exceptions_enable=False)


def fail(message: str, code: int = EXIT_REFUSED) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr."""
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail_lines(lines: list[str], code: int = EXIT_REFUSED) -> typer.Exit:
    """Print one ``error:`` line per problem and return the Exit to raise."""
    for line in lines[:-1]:
        fail(line)
    return fail(lines[-1], code)


def error_lines(detail: Any) -> list[str]:
    """One line per problem of an API error detail (FastAPI 422 lists become ``field: rule``)."""
    if isinstance(detail, list) and detail:
        lines = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query", "path")]
                msg = str(item["msg"]).removeprefix("Value error, ")
                lines.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
            else:
                lines.append(str(item))
        return lines
    if isinstance(detail, str):
        return [detail]
    return [json.dumps(detail)]


def make_client(server: str, token: str | None) -> Client:
    """An API client that gives up quickly when the server is down (a person is waiting)."""
    import logging

    logging.getLogger("worker.client").setLevel(logging.ERROR)  # no per-retry warnings here
    problem = server_url_problem(server)
    if problem is not None:
        raise fail(f"--server {problem}", EXIT_CONFIG)
    return Client(server, token, attempts=3, deadline=5.0)


@contextmanager
def api_errors(server: str) -> Iterator[None]:
    """Turn the client's errors into one-line messages and exit codes (never a traceback)."""
    try:
        yield
    except ServerUnreachable:
        raise fail(
            f"cannot reach the lionsweep server at {server} "
            "(start one with `lionsweep up` or `lionsweep serve`, or pass --server)",
            EXIT_CONFIG,
        ) from None
    except ApiError as exc:
        if exc.foreign:
            raise fail(
                f"no lionsweep server answers at {server}: it answered HTTP {exc.status_code} "
                f"({exc.detail}); is --server the server's base URL, such as {DEFAULT_SERVER}?",
                EXIT_CONFIG,
            ) from None
        if exc.status_code == 404 and exc.detail == "Not Found":  # no such route at all
            raise fail(
                f"the server at {server} has no such path: is --server the server's base URL, "
                f"such as {DEFAULT_SERVER} (without /api)?",
                EXIT_CONFIG,
            ) from None
        raise fail_lines(error_lines(exc.detail) or [f"HTTP {exc.status_code}"]) from None


def fmt(value: Any) -> str:
    """A number with 4 significant digits, or ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def counts_text(sweep: dict[str, Any]) -> str:
    """``12 complete · 3 pruned · 0 failed · 2 running`` for one sweep (and ``· 1 handed
    back`` when a worker handed trials back)."""
    counts = sweep.get("counts") or {}
    parts = ("complete", "pruned", "failed", "running")
    text = " · ".join(f"{counts.get(k, 0)} {k}" for k in parts)
    if counts.get("handed_back"):
        text += f" · {counts['handed_back']} handed back"
    return text


def best_text(sweep: dict[str, Any], single: bool = False, short: bool = False) -> str:
    """``0.0091 [0.0026–0.0156] (trial 26, 3 seeds)``: the config /best ranks first, its value
    (a seed mean) with its 90% interval and seed count, or ``-``; ``short``: ``0.0091 (3
    seeds)``; with ``single``, the best single run after it, labelled as such."""
    best = sweep.get("best") or {}
    if best.get("value") is None:
        return "-"
    ci = best.get("ci")
    n = best.get("n_seeds")
    text = fmt(best.get("mean", best["value"]))
    if short:
        return text if n is None else f"{text} ({n} seed{'' if n == 1 else 's'})"
    if ci:
        sep = " to " if min(ci) < 0 else "–"
        text += f" [{fmt(ci[0])}{sep}{fmt(ci[1])}]"
    if n is not None:
        text += f" (trial {best.get('trial_number')}, {n} seed{'' if n == 1 else 's'})"
    if single and best.get("best_single_value") is not None:
        text += (
            f"; best single run {fmt(best['best_single_value'])} "
            f"(trial {best.get('best_single_trial_number')})"
        )
    return text


@app.command()
def worker(
    server: ServerOpt = DEFAULT_SERVER,
    token: Annotated[
        str | None, typer.Option(envvar="LIONSWEEP_TOKEN", help="Bearer token (worker scope).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda:N.")] = "auto",
    gpus: Annotated[
        str | None, typer.Option(help="'all' or '0,1,…': one supervised agent per GPU.")
    ] = None,
    max_trials: Annotated[int | None, typer.Option(help="Exit after this many trials.")] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="Exit after this many seconds with nothing to run.")
    ] = None,
    task_module: Annotated[
        list[str] | None,
        typer.Option("--task-module", help="Import this module to register its tasks."),
    ] = None,
    stop_grace: Annotated[
        float,
        typer.Option(
            envvar="LIONSWEEP_WORKER_STOP_GRACE",
            help="Seconds a trial may take to end after a stop signal or the server's stop "
            "before the worker ends it itself (and, on a signal, exits).",
        ),
    ] = DEFAULT_STOP_GRACE,
    connect_timeout: Annotated[
        float,
        typer.Option(
            envvar="LIONSWEEP_WORKER_CONNECT_TIMEOUT",
            help="Seconds to try a server never reached yet before exiting 2 (a server once "
            "reached is waited for however long it is away).",
        ),
    ] = DEFAULT_CONNECT_TIMEOUT,
    commands: Annotated[
        str | None,
        typer.Option(
            "--commands",
            envvar="LIONSWEEP_WORKER_COMMANDS",
            help="A TOML (or YAML) file registering command tasks: programs this worker runs "
            "once per trial (see worker/commands.py).",
        ),
    ] = None,
) -> None:
    """Run a worker agent: claim trials, train, report, finish."""
    from worker.agent import main as worker_main

    raise typer.Exit(
        worker_main(
            server=server,
            token=token,
            device=device,
            gpus=gpus,
            max_trials=max_trials,
            idle_exit=idle_exit,
            task_modules=task_module or [],
            stop_grace=stop_grace,
            commands_path=commands,
            connect_timeout=connect_timeout,
        )
    )
