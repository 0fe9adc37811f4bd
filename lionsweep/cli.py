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
            re = sweep.get("reevaluation") or {}
            extra = re.get("trials") or 0
            if re.get("status") == "pending":
                extra = (re.get("top_k") or 0) * (re.get("seeds") or 0)
            progress.update(
                task,
                completed=sweep.get("finished", 0) + (re.get("finished") or 0),
                total=sweep["n_trials"] + extra,
                counts=counts_text(sweep),
                best=fmt(best),
            )
            if sweep["status"] != "running":
                break
            time.sleep(interval)
            sweep = client.get(f"/api/sweeps/{sweep_id}")
    return sweep


def interval_text(ci: list[float] | None) -> str:
    """``lo–hi`` of a 90% interval, or ``-``."""
    return "-" if not ci else f"{fmt(ci[0])}–{fmt(ci[1])}"


def print_best(answer: dict[str, Any]) -> None:
    """Print the top configs (seed means, 90% intervals, ties) and the best one's kwargs."""
    table = Table(title="Best configs (by seed mean)", title_justify="left")
    for column in ("rank", "trial", "mean", "90% CI", "seeds", "optimizer", "lr", "weight_decay"):
        table.add_column(column, justify="left" if column == "optimizer" else "right")
    table.add_column("betas", justify="right")
    table.add_column("warmup", justify="right")
    table.add_column("batch", justify="right")
    top = answer.get("top") or [answer["best"]]
    tied = set(answer.get("tied") or [])
    for rank, cfg in enumerate(top, start=1):
        kw = cfg.get("optimizer_kwargs") or {}
        betas = ", ".join(fmt(b) for b in kw.get("betas", []))
        mark = "=" if cfg.get("trial_number") in tied and len(tied) > 1 else ""
        table.add_row(
            f"{rank}{mark}",
            str(cfg.get("trial_number")),
            fmt(cfg.get("mean", cfg.get("value"))),
            interval_text(cfg.get("ci")),
            str(cfg.get("n_seeds", 1)),
            cfg.get("optimizer", "lion"),
            fmt(kw.get("lr")),
            fmt(kw.get("weight_decay")),
            f"({betas})",
            fmt(cfg.get("warmup_steps")),
            fmt(cfg.get("batch_size")),
        )
    console.print(table)
    noise = answer.get("noise_sd")
    if noise is not None:
        console.print(
            f"seed noise sd {fmt(noise)} ({answer.get('noise_df')} df); '=' marks configs the "
            "data cannot tell apart from the best",
            highlight=False,
        )
    if answer.get("note"):
        console.print(answer["note"], highlight=False)
    re = answer.get("reevaluation") or {}
    if re.get("status") in ("queued", "pending", "skipped"):
        done = (
            f" ({re.get('finished')}/{re.get('trials')} done)" if re["status"] == "queued" else ""
        )
        why = f": {re['reason']}" if re.get("reason") else ""
        console.print(f"re-evaluation {re['status']}{done}{why}", highlight=False)
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
        ("re-evaluation", reevaluation_text(sweep.get("reevaluation"))),
        ("eta", "-" if eta is None else f"{eta:.0f} s"),
        ("created", str(sweep.get("created_at", "-"))),
    ]
    for field, value in rows:
        table.add_row(field, value)
    console.print(table)
    for warning in sweep.get("warnings") or []:
        warn(warning)


def reevaluation_text(re: dict[str, Any] | None) -> str:
    """One line on where the re-evaluation of the leading configs stands."""
    if not re:
        return "-"
    status = re.get("status", "-")
    if status in ("queued", "done"):
        return f"{status}: top {re.get('top_k')} × {re.get('seeds')} seeds, " + (
            f"{re.get('finished')}/{re.get('trials')} runs done"
        )
    if status == "pending":
        return f"pending: top {re.get('top_k')} × {re.get('seeds')} seeds when the trials are done"
    return f"{status}" + (f" ({re['reason']})" if re.get("reason") else "")


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


def print_sweep_rule(fit: dict[str, Any], sweep_id: int) -> None:
    """Print a sweep's fitted lr × weight-decay answer: verdict, intervals, transfer."""
    verdict = fit["verdict"]
    colour = {"valley": "green", "lr_only": "cyan", "boundary": "yellow"}.get(verdict, "red")
    console.print(f"sweep {sweep_id}: verdict [bold {colour}]{verdict}[/]", highlight=False)
    console.print(fit["reason"], highlight=False)
    rows: dict[str, Any] = {}
    if fit.get("slope") is not None:
        rows["slope d ln λ / d ln η"] = (
            f"{fmt(fit['slope'])} (90% CI {interval_text(fit['slope_ci'])})"
        )
    if fit.get("product") is not None:
        rows["η·λ at the optimum"] = f"{fmt(fit['product'])} ({interval_text(fit['product_ci'])})"
        rows["α0 = √(2ηλ)"] = f"{fmt(fit['alpha0'])} ({interval_text(fit['alpha0_ci'])})"
    opt = fit.get("optimum")
    if opt:
        rows["optimum lr"] = f"{fmt(opt['lr'])} ({interval_text(opt['lr_ci'])})"
        rows["optimum weight decay"] = (
            f"{fmt(opt['weight_decay'])} ({interval_text(opt['weight_decay_ci'])})"
        )
        rows["predicted objective"] = f"{fmt(opt['value'])} ({interval_text(opt['value_ci'])})"
    if fit.get("on_boundary"):
        rows["on the box's edge"] = ", ".join(fit.get("boundary_edges") or [])
    best = fit.get("best")
    if best:
        rows["best config"] = (
            f"trial {best['trial_number']}: lr {fmt(best['lr'])}, weight decay "
            f"{fmt(best['weight_decay'])}, {fmt(best['value'])}"
        )
    rows["noise sd (seeds)"] = fmt(fit.get("noise_sd"))
    rows["residual sd (fit)"] = fmt(fit.get("residual_sd"))
    left = fit.get("left_out") or {}
    rows["trials fitted"] = (
        f"{fit['n']} (left out: " + ", ".join(f"{v} {k}" for k, v in left.items() if v) + ")"
        if any(left.values())
        else str(fit["n"])
    )
    if fit.get("width") is not None:
        rows["sweep width"] = f"{fmt(fit['width'])} ({fit.get('width_param')})"
    table = Table(title="Fitted lr × weight-decay surface", title_justify="left")
    table.add_column("quantity")
    table.add_column("estimate (90% CI)")
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)
    t = fit.get("transfer")
    if t:
        moved = " and ".join(t["moved"])
        console.print(
            f"to width {fmt(t['to_width'])} ({t['width_rule']} rule, {moved} moved): "
            f"lr {fmt(t['lr'])}, weight decay {fmt(t['weight_decay'])}",
            highlight=False,
        )
        console.print(t["note"], highlight=False, style="dim")
    if verdict != "valley":
        console.print(
            "no lr–weight-decay rule is drawn or transferred: the verdict is not 'valley'",
            highlight=False,
        )


@app.command()
def rule(
    width: Annotated[
        float | None,
        typer.Option(help="Model width (σ = width^-1/2); with --sweep, the width to move to."),
    ] = None,
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
        int | None,
        typer.Option("--sweep", help="Fit the lr × weight-decay surface of this sweep's trials."),
    ] = None,
    width_rule: Annotated[
        str,
        typer.Option(
            help="With --sweep --width: sqrt (lr ∝ w^-½, λ ∝ w^½), mup (lr ∝ 1/w, λ ∝ w) "
            "or mup_sqrt (lr ∝ 1/w, λ ∝ w^½)."
        ),
    ] = "sqrt",
    from_width: Annotated[
        float | None,
        typer.Option(help="With --sweep: the sweep's width, if its task declares none."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")] = False,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Lion's lr and weight decay for a width (η = α0·σ, λ = α0/2σ), from AdamW, or a sweep."""
    if sweep is not None:
        if sigma is not None:
            raise fail("--sigma does not apply to --sweep: give --width to move to", EXIT_CONFIG)
        params: dict[str, Any] = {"width_rule": width_rule}
        if width is not None:
            params["width"] = width
        if from_width is not None:
            params["from_width"] = from_width
        with api_errors(server), make_client(server, token) as client:
            fit = client.get(f"/api/sweeps/{sweep}/scaling-rule", params=params)
        if as_json:
            typer.echo(json.dumps(fit, indent=2))
        else:
            print_sweep_rule(fit, sweep)
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
