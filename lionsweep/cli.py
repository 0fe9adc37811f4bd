"""The ``lionsweep`` command line: one root app composing every sub-command.

- ``serve``, ``db``, ``token``, ``up``: the server's and admin commands (``service.cli``),
  which need the ``server`` extra (``pip install 'lionsweep[server]'``);
- ``worker``: the worker agent (``worker.cli``);
- ``submit``, ``status``, ``best``, ``rule``, ``bench``: client commands (here) that talk
  to a server through ``worker.client.Client``, built and its errors mapped to one-line
  messages in one place (``worker.cli``).

Sub-commands of other packages are imported only when named (or listed by ``--help``), so
``lionsweep worker`` and the client commands run on a worker-only install; a server command
there prints one line saying what to install and exits 2. Exit codes: 1 for a request the
server refused, 2 for a server that cannot be reached, unusable input or a missing extra.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from optim import scaling
from worker import EXIT_CONFIG
from worker.cli import (
    ServerOpt,
    TokenOpt,
    api_errors,
    console,
    counts_text,
    error_lines,
    fail,
    fmt,
    make_client,
    warn,
)
from worker.client import DEFAULT_SERVER, ApiError

if TYPE_CHECKING:
    from worker.client import Client

#: Commands that live in other packages: name → the module whose Typer ``app`` defines it.
SUBCOMMANDS = {
    "up": "service.cli",
    "serve": "service.cli",
    "worker": "worker.cli",
    "db": "service.cli",
    "token": "service.cli",
}
#: Packages of the ``server`` extra that the server's commands cannot run without.
SERVER_PACKAGES = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "optuna", "pydantic_settings")
SERVER_EXTRA = "pip install 'lionsweep[server]'"


def missing_server_package() -> str | None:
    """The first package of the ``server`` extra that cannot be imported, or ``None``."""
    for name in SERVER_PACKAGES:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):
            return name
    return None


def needs_server(name: str, missing: str) -> TyperCommand:
    """A stand-in for a server command on a worker-only install: one line, exit 2."""

    def refuse() -> None:
        raise fail(
            f"`lionsweep {name}` needs the server's packages (no module {missing!r}): "
            f"{SERVER_EXTRA}",
            EXIT_CONFIG,
        )

    return TyperCommand(
        name,
        callback=refuse,
        help=f"Needs the server extra: {escape(SERVER_EXTRA)}.",  # rich markup: [server]
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )


@functools.cache
def load_subcommand(name: str) -> TyperCommand | TyperGroup:
    """The command ``name`` of the module :data:`SUBCOMMANDS` names (imported now)."""
    module = SUBCOMMANDS[name]
    if module.startswith("service.") and (missing := missing_server_package()):
        return needs_server(name, missing)
    return typer.main.get_group(importlib.import_module(module).app).commands[name]


class LionsweepGroup(TyperGroup):
    """The root group: its own commands, plus :data:`SUBCOMMANDS` loaded when named."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        """Every command, the composed ones first."""
        return [*SUBCOMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> TyperCommand | TyperGroup | None:
        """A command of this group, importing its package only now."""
        if cmd_name in SUBCOMMANDS:
            return load_subcommand(cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="lionsweep",
    cls=LionsweepGroup,
    help="Hyperparameter sweeps for the Lion optimizer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def load_spec(path: Path) -> dict[str, Any]:
    """Read a sweep spec from a YAML or JSON file (exit 2 with one line when unreadable)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_CONFIG) from None
    try:
        spec = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise fail(f"{path} is not valid YAML/JSON: {first}", EXIT_CONFIG) from None
    if not isinstance(spec, dict):
        raise fail(f"{path}: a sweep spec must be a mapping (name, task, space, …)", EXIT_CONFIG)
    return spec


# -- submit / status / best -------------------------------------------------------------------


def follow_sweep(client: Client, sweep_id: int, interval: float = 1.0) -> dict[str, Any]:
    """Show a rich progress bar until the sweep stops running; return its last state."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    sweep = client.get(f"/api/sweeps/{sweep_id}")
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(sweep["name"], total=sweep["n_trials"], counts="", best="-")
        while True:
            best = (sweep.get("best") or {}).get("value")
            progress.update(
                task,
                completed=sweep.get("finished", 0),
                total=sweep["n_trials"],
                counts=counts_text(sweep),
                best=fmt(best),
            )
            if sweep["status"] != "running":
                break
            time.sleep(interval)
            sweep = client.get(f"/api/sweeps/{sweep_id}")
    return sweep


def print_best(answer: dict[str, Any]) -> None:
    """Print the top configs as a table and the best one's optimizer kwargs as JSON."""
    table = Table(title="Best configs", title_justify="left")
    for column in ("rank", "trial", "value", "optimizer", "lr", "weight_decay", "betas"):
        table.add_column(column, justify="right" if column != "optimizer" else "left")
    table.add_column("warmup", justify="right")
    table.add_column("batch", justify="right")
    top = answer.get("top") or [answer["best"]]
    for rank, cfg in enumerate(top, start=1):
        kw = cfg.get("optimizer_kwargs") or {}
        betas = ", ".join(fmt(b) for b in kw.get("betas", []))
        table.add_row(
            str(rank),
            str(cfg.get("trial_number")),
            fmt(cfg.get("value")),
            cfg.get("optimizer", "lion"),
            fmt(kw.get("lr")),
            fmt(kw.get("weight_decay")),
            f"({betas})",
            fmt(cfg.get("warmup_steps")),
            fmt(cfg.get("batch_size")),
        )
    console.print(table)
    best = answer["best"]
    cls = "torch.optim.AdamW" if best.get("optimizer") == "adamw" else "optim.Lion"
    console.print(f"best optimizer kwargs ({cls}):", highlight=False)
    console.print(json.dumps(best.get("optimizer_kwargs")), highlight=False, soft_wrap=True)


@app.command()
def submit(
    spec_file: Annotated[Path, typer.Argument(help="Sweep spec, YAML or JSON.", metavar="FILE")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Show progress until the sweep ends.")
    ] = False,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting twice with the same key creates one sweep.")
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between progress polls.")] = 1.0,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Submit a sweep (and with --follow, watch it and print the best config)."""
    spec = load_spec(spec_file)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    with api_errors(server), make_client(server, token) as client:
        sweep = client.post("/api/sweeps", json=spec, headers=headers)
        console.print(
            f"Submitted sweep [bold]{sweep['id']}[/] ({sweep['name']}, {sweep['n_trials']} "
            f"trials): {server.rstrip('/')}/sweeps/{sweep['id']}",
            highlight=False,
        )
        for warning in sweep.get("warnings") or []:
            warn(warning)
        if not follow:
            return
        try:
            sweep = follow_sweep(client, sweep["id"], interval)
        except KeyboardInterrupt:
            console.print("stopped following; the sweep goes on")
            return
        console.print(f"sweep {sweep['id']} {sweep['status']}: {counts_text(sweep)}")
        try:
            print_best(client.get(f"/api/sweeps/{sweep['id']}/best", params={"k": 5}))
        except ApiError as exc:
            if exc.status_code != 409:
                raise
            raise fail("no trial completed: " + " ".join(error_lines(exc.detail))) from None


@app.command()
def status(
    sweep_id: Annotated[int | None, typer.Argument(help="A sweep id; omit to list sweeps.")] = None,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """List sweeps, or show one sweep's progress."""
    with api_errors(server), make_client(server, token) as client:
        if sweep_id is None:
            page = client.get("/api/sweeps", params={"limit": 100})
            table = Table(title=f"Sweeps ({page['total']})", title_justify="left")
            table.add_column("id", justify="right")
            table.add_column("name", no_wrap=True)
            table.add_column("task", no_wrap=True)
            table.add_column("status")
            table.add_column("finished", justify="right")
            table.add_column("complete/pruned/failed/running", justify="right")
            table.add_column("best", justify="right")
            for sweep in page["items"]:
                c = sweep.get("counts") or {}
                table.add_row(
                    str(sweep["id"]),
                    sweep["name"],
                    (sweep.get("task") or {}).get("name", "-"),
                    sweep["status"],
                    f"{sweep.get('finished', 0)}/{sweep['n_trials']}",
                    "/".join(str(c.get(k, 0)) for k in ("complete", "pruned", "failed", "running")),
                    fmt((sweep.get("best") or {}).get("value")),
                )
            console.print(table)
            return
        sweep = client.get(f"/api/sweeps/{sweep_id}")
    table = Table(title=f"Sweep {sweep['id']}: {sweep['name']}", title_justify="left")
    table.add_column("field")
    table.add_column("value")
    best = sweep.get("best") or {}
    eta = sweep.get("eta_seconds")
    rows = [
        ("status", sweep["status"]),
        ("task", (sweep.get("task") or {}).get("name", "-")),
        ("progress", f"{sweep.get('finished', 0)}/{sweep['n_trials']}"),
        *((k, str(v)) for k, v in (sweep.get("counts") or {}).items()),
        ("best value", fmt(best.get("value"))),
        ("best trial", fmt(best.get("trial_number"))),
        ("eta", "-" if eta is None else f"{eta:.0f} s"),
        ("created", str(sweep.get("created_at", "-"))),
    ]
    for field, value in rows:
        table.add_row(field, value)
    console.print(table)
    for warning in sweep.get("warnings") or []:
        warn(warning)


@app.command()
def best(
    sweep_id: Annotated[int, typer.Argument(help="The sweep id.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="How many top configs.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")] = False,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Print a sweep's best configs (ready-to-use optimizer kwargs)."""
    with api_errors(server), make_client(server, token) as client:
        answer = client.get(f"/api/sweeps/{sweep_id}/best", params={"k": k})
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
    else:
        print_best(answer)


# -- the scaling rule ------------------------------------------------------------------------


def rule_table(title: str, rows: dict[str, Any]) -> Table:
    """A two-column table of a rule's numbers."""
    table = Table(title=title, title_justify="left")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, fmt(value))
    return table


@app.command()
def rule(
    width: Annotated[float | None, typer.Option(help="Model width (σ = width^-1/2).")] = None,
    sigma: Annotated[float | None, typer.Option(help="Init scale σ (instead of --width).")] = None,
    alpha0: Annotated[
        float, typer.Option("--alpha0", help="α0 of η = α0·σ, λ = α0/(2σ).")
    ] = scaling.ALPHA0,
    adamw_lr: Annotated[float | None, typer.Option(help="Convert an AdamW lr …")] = None,
    adamw_wd: Annotated[float | None, typer.Option(help="… and its weight decay to Lion.")] = None,
    factor: Annotated[
        float, typer.Option(help="AdamW→Lion lr divisor / wd multiplier.")
    ] = scaling.ADAMW_TO_LION_FACTOR,
    sweep: Annotated[
        int | None, typer.Option("--sweep", help="Fit η vs λ over this sweep's trials.")
    ] = None,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Lion's lr and weight decay for a width (η = α0·σ, λ = α0/2σ), from AdamW, or a sweep."""
    if sweep is not None:
        with api_errors(server), make_client(server, token) as client:
            fit = client.get(f"/api/sweeps/{sweep}/scaling-rule")
        console.print(rule_table(f"Fitted rule of sweep {sweep}: log λ = a + b·log η", fit))
        if width is not None or sigma is not None:
            lr, wd = scaling.lr_and_decay(sigma=sigma, width=width, alpha0=fit["alpha0"])
            console.print(
                rule_table(
                    f"Transferred with α0 = {fit['alpha0']:.4g}",
                    {"width": width, "sigma": sigma, "lr": lr, "weight_decay": wd},
                )
            )
        return
    if adamw_lr is not None or adamw_wd is not None:
        if adamw_lr is None or adamw_wd is None:
            raise fail("--adamw-lr and --adamw-wd go together", EXIT_CONFIG)
        try:
            lr, wd = scaling.from_adamw(adamw_lr, adamw_wd, factor=factor)
        except ValueError as exc:
            raise fail(str(exc), EXIT_CONFIG) from None
        rows = {"adamw lr": adamw_lr, "adamw weight_decay": adamw_wd, "factor": factor}
        console.print(
            rule_table("Lion from AdamW", {**rows, "lr": lr, "weight_decay": wd, "η·λ": lr * wd})
        )
        return
    if width is None and sigma is None:
        raise fail(
            "give --width or --sigma (with --alpha0), --adamw-lr/--adamw-wd, or --sweep",
            EXIT_CONFIG,
        )
    try:
        lr, wd = scaling.lr_and_decay(sigma=sigma, width=width, alpha0=alpha0)
    except ValueError as exc:
        raise fail(str(exc), EXIT_CONFIG) from None
    s = sigma if sigma is not None else float(width) ** -0.5
    rows = {"width": width, "sigma": s, "alpha0": alpha0, "lr": lr, "weight_decay": wd}
    console.print(rule_table("Lion lr and weight decay", {**rows, "η·λ": lr * wd}))


# -- bench ----------------------------------------------------------------------------------


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run bench/optim_step.py (Lion step timings); extra arguments are passed through."""
    script = Path(__file__).resolve().parent.parent / "bench" / "optim_step.py"
    if not script.is_file():
        raise fail(
            f"{script} not found: benchmarks need the source tree (git checkout)", EXIT_CONFIG
        )
    code = subprocess.call([sys.executable, str(script), *ctx.args], cwd=script.parent.parent)
    raise typer.Exit(code)
