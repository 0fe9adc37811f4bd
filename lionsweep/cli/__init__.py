"""The ``lionsweep`` command line: one root app composing every sub-command.

- ``serve``, ``db``, ``token``, ``up``: the server's and admin commands (``lionsweep.server_cli``),
  which need the ``server`` extra (``pip install 'lionsweep[server]'``);
- ``worker``: the worker agent (``worker.cli``);
- ``submit``, ``status``, ``best``, ``rule``, ``import``, ``ladder …``, ``bench``: client
  commands (here) that talk to a server through ``worker.client.Client``, built and its errors
  mapped to one-line messages in one place (``worker.cli``).

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
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from optim import scaling
from protocol import DEFAULT_SERVER
from protocol.yaml_errors import yaml_problem
from worker import EXIT_CONFIG
from worker.cli import (
    ServerOpt,
    TokenOpt,
    api_errors,
    best_text,
    console,
    counts_text,
    error_lines,
    fail,
    fail_lines,
    fmt,
    make_client,
    warn,
)
from worker.client import ApiError

if TYPE_CHECKING:
    from worker.client import Client

#: Commands that live in other packages: name → the module whose Typer ``app`` defines it.
SERVER_CLI = "lionsweep.server_cli"
"""The module of the commands that need the ``server`` extra."""
SUBCOMMANDS = {
    "up": SERVER_CLI,
    "serve": SERVER_CLI,
    "worker": "worker.cli",
    "db": SERVER_CLI,
    "token": SERVER_CLI,
}
#: Packages of the ``server`` extra that the server's commands cannot run without.
SERVER_PACKAGES = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "optuna", "pydantic_settings")
SERVER_EXTRA = "pip install 'lionsweep[server]'"


class FoldTable(Table):
    """A table whose cells fold a value too long for its column onto the next line rather
    than cut it with an ellipsis: at 80 columns nothing a user needs is hidden."""

    def add_column(self, *args: Any, overflow: Any = "fold", **kwargs: Any) -> None:
        """Add a column as :class:`rich.table.Table` does, folding (not cutting) by default."""
        super().add_column(*args, overflow=overflow, **kwargs)


def new_table(title: str) -> Table:
    """A table under ``title``, at least as wide as the title so that it stays on one line,
    whose cells fold rather than cut."""
    return FoldTable(title=title, title_justify="left", min_width=len(title))


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
    if module == SERVER_CLI and (missing := missing_server_package()):
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


SPEC_MAX_BYTES = 64 * 1024
"""The largest spec file ``submit`` and ``ladder submit`` read: the server's cap on a YAML
body (``service.app.YAML_MAX_BYTES``); a spec is a few hundred bytes."""


def load_spec(path: Path) -> dict[str, Any]:
    """Read a sweep spec from a YAML or JSON file of at most :data:`SPEC_MAX_BYTES` (exit 2
    with one line when it is too big or unreadable, before parsing it)."""
    import yaml

    try:
        size = path.stat().st_size
        if size > SPEC_MAX_BYTES:
            raise fail(
                f"{path} is {size} bytes; a sweep spec may be at most {SPEC_MAX_BYTES} bytes "
                f"({SPEC_MAX_BYTES // 1024} KiB, the server's cap)",
                EXIT_CONFIG,
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise fail(f"cannot read {path}: {why}", EXIT_CONFIG) from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        if path.suffix.lower() == ".json":
            spec = json.loads(text)
        else:
            spec = yaml.load(text, Loader=loader)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise fail(f"{path} is not valid JSON: {where}", EXIT_CONFIG) from None
    except (ValueError, yaml.YAMLError) as exc:
        raise fail(f"{path} is not valid YAML: {yaml_problem(exc)}", EXIT_CONFIG) from None
    if not isinstance(spec, dict):
        raise fail(f"{path}: a sweep spec must be a mapping (name, task, space, …)", EXIT_CONFIG)
    return spec


# -- submit / status / best -------------------------------------------------------------------


def print_then_link(markup: str, link: str) -> None:
    """Print ``markup`` and then ``link`` on the same line when both fit the terminal, else
    the link on a line of its own: either way never broken (it is there to be copied)."""
    from rich.text import Text

    text = Text.from_markup(markup)
    if text.cell_len + 1 + len(link) <= console.width:
        console.print(text, link, highlight=False, soft_wrap=True)
    else:
        console.print(text, highlight=False)
        console.print(link, highlight=False, soft_wrap=True)


def follow_sweep(client: Client, sweep_id: int, interval: float = 1.0) -> dict[str, Any]:
    """Show a rich progress bar until the sweep stops running; return its last state."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Column

    sweep = client.get(f"/api/sweeps/{sweep_id}")
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        # the best config's seed mean and seed count wrap on a narrow terminal, not the bar
        TextColumn("best {task.fields[best]}", table_column=Column(ratio=1, min_width=12)),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(sweep["name"], total=sweep["n_trials"], counts="", best="-")
        while True:
            re = sweep.get("reevaluation") or {}
            extra = re.get("trials") or 0
            if re.get("status") == "pending":
                extra = (re.get("top_k") or 0) * (re.get("seeds") or 0)
            progress.update(
                task,
                completed=sweep.get("finished", 0) + (re.get("finished") or 0),
                total=sweep["n_trials"] + extra,
                counts=counts_text(sweep),
                best=best_text(sweep, short=True),
            )
            if sweep["status"] != "running":
                break
            time.sleep(interval)
            sweep = client.get(f"/api/sweeps/{sweep_id}")
    return sweep


def interval_text(ci: list[float] | None) -> str:
    """``lo–hi`` of a 90% interval (``lo to hi`` when a bound is negative), or ``-``."""
    if not ci:
        return "-"
    sep = " to " if min(ci) < 0 else "–"
    return f"{fmt(ci[0])}{sep}{fmt(ci[1])}"


def estimate_text(value: Any, ci: list[float] | None, stacked: bool = False) -> str:
    """``value (lo–hi)`` of an estimate and its 90% interval (``stacked``: the interval on a
    second line, for narrow table cells), ``value`` without one, or ``-``."""
    if value is None:
        return "-"
    if not ci:
        return fmt(value)
    return (
        f"{fmt(value)}\n{interval_text(ci)}" if stacked else f"{fmt(value)} ({interval_text(ci)})"
    )


def print_best(answer: dict[str, Any]) -> None:
    """Print the top configs (seed means, 90% intervals, ties) and the best one's kwargs."""
    table = new_table("Best configs (by seed mean)")
    table.add_column("rank", justify="right", no_wrap=True)
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("mean [90% CI]", justify="right")
    table.add_column("seeds", justify="right", no_wrap=True)
    # one column for the config, which may wrap: the table fits an 80-column terminal
    table.add_column("config", justify="left")
    top = answer.get("top") or [answer["best"]]
    tied = set(answer.get("tied") or [])
    for rank, cfg in enumerate(top, start=1):
        kw = cfg.get("optimizer_kwargs") or {}
        betas = ", ".join(fmt(b) for b in kw.get("betas", []))
        mark = "=" if cfg.get("trial_number") in tied and len(tied) > 1 else ""
        ci = cfg.get("ci")
        config = (
            f"{cfg.get('optimizer', 'lion')} lr {fmt(kw.get('lr'))} "
            f"wd {fmt(kw.get('weight_decay'))} betas ({betas}) "
            f"warmup {fmt(cfg.get('warmup_steps'))} batch {fmt(cfg.get('batch_size'))}"
        )
        table.add_row(
            f"{rank}{mark}",
            str(cfg.get("trial_number")),
            fmt(cfg.get("mean", cfg.get("value"))) + (f" [{interval_text(ci)}]" if ci else ""),
            str(cfg.get("n_seeds", 1)),
            config,
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
    console.print(
        f"best optimizer kwargs ({cls}; 6 significant digits, --json for all):", highlight=False
    )
    # one line, never wrapped by rich, and short enough to stay whole in 80 columns
    console.print(kwargs_line(best.get("optimizer_kwargs")), highlight=False, soft_wrap=True)


KWARGS_DIGITS = 6
"""Significant digits of the copyable kwargs line (the sampled values carry noise digits)."""


def kwargs_line(kwargs: Any) -> str:
    """Optimizer kwargs as one line of JSON, floats to :data:`KWARGS_DIGITS` significant
    digits (``{"lr": 0.00371111, "betas": [0.9, 0.99], "weight_decay": 0.00655131}``)."""

    def short(value: Any) -> Any:
        if isinstance(value, float) and math.isfinite(value):
            return float(f"{value:.{KWARGS_DIGITS}g}")
        if isinstance(value, list | tuple):
            return [short(v) for v in value]
        if isinstance(value, dict):
            return {k: short(v) for k, v in value.items()}
        return value

    return json.dumps(short(kwargs))


def arms_text(arms: dict[str, Any]) -> list[str]:
    """Lines on Lion against the AdamW baseline arm (none for a sweep without one)."""
    if not arms.get("baseline"):
        return []
    verdict, ci = arms.get("verdict"), arms.get("difference_ci")
    if verdict in ("lion_better", "adamw_better") and ci:
        adv = sorted(abs(v) for v in ci)
        who = "Lion" if verdict == "lion_better" else "AdamW"
        head = f"{who} better by {fmt(abs(arms['difference']))} [{interval_text(adv)}]"
    elif verdict == "tied" and ci:
        head = f"tied: Lion − AdamW {fmt(arms['difference'])} [{interval_text(ci)}]"
    else:
        head = f"not measured: {arms.get('reason')}"
    lines = [f"Lion vs AdamW: {head}"]
    for arm in (arms.get("lion"), arms.get("adamw")):
        best = (arm or {}).get("best")
        if best:
            ci_text = f" [{interval_text(best['ci'])}]" if best.get("ci") else ""
            name = "Lion" if arm["optimizer"] == "lion" else "AdamW"
            lines.append(
                f"  {name:<5} {fmt(best['mean'])}{ci_text}, {best['n_seeds']} seeds "
                f"(trial {best['trial_number']})"
            )
    for label, key in (("lr", "lr_ratio"), ("wd", "weight_decay_ratio")):
        r = arms.get(key)
        if r:
            ci_text = f" [{interval_text(r['ci'])}]" if r.get("ci") else " (best configs)"
            lo, hi = r["expected"]
            lines.append(
                f"  {label} AdamW/Lion {fmt(r['value'])}×{ci_text}, paper "
                f"{lo:.2g}–{hi:.2g}×: {r['agreement']}"
            )
    if verdict != "not_measured" and arms.get("selection_note"):
        lines.append(f"  {arms['selection_note']}")
    return lines


def print_arms(client: Client, sweep_id: int) -> None:
    """Print the Lion-versus-AdamW answer of a sweep with a baseline arm (nothing otherwise,
    nor from a server that predates /arms)."""
    try:
        arms = client.get(f"/api/sweeps/{sweep_id}/arms")
    except ApiError as e:
        if e.status_code in (404, 405):
            return
        raise
    for line in arms_text(arms):
        console.print(line, highlight=False)


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
    if "ladder" in spec:
        raise fail(
            f"{spec_file} is a width ladder (it has `ladder:`): submit it with "
            "`lionsweep ladder submit`",
            EXIT_CONFIG,
        )
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    with api_errors(server), make_client(server, token) as client:
        sweep = client.post("/api/sweeps", json=spec, headers=headers)
        print_then_link(
            f"Submitted sweep [bold]{sweep['id']}[/] ({escape(sweep['name'])}, "
            f"{sweep['n_trials']} trials):",
            f"{server.rstrip('/')}/sweeps/{sweep['id']}",
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


def sweeps_list(page: dict[str, Any]) -> Table:
    """The table of ``lionsweep status``: one row per sweep, fitting 80 columns with nothing
    cut (ids, counts and the status never wrap; the other cells wrap, and fold a word too
    long)."""
    rows = []
    for sweep in page["items"]:
        c = sweep.get("counts") or {}
        rows.append(
            (
                str(sweep["id"]),
                sweep["name"],
                (sweep.get("task") or {}).get("name", "-"),
                # the task is in its own column: "waiting for a worker with task X" short
                "no worker yet"
                if (sweep.get("activity") or "").startswith("waiting for a worker")
                else sweep["status"],
                f"{sweep.get('finished', 0)}/{sweep['n_trials']}",
                "/".join(str(c.get(k, 0)) for k in ("complete", "pruned", "failed", "running")),
                best_text(sweep, short=True),
            )
        )
    table = new_table(f"Sweeps ({page['total']})")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("name")
    table.add_column("task")
    # as wide as its longest value ("no worker yet"): the others give way
    table.add_column("status", width=max([len("status"), *(len(row[3]) for row in rows)]))
    table.add_column("done", justify="right", no_wrap=True)
    table.add_column("c/p/f/r", justify="right", no_wrap=True)
    table.add_column("best (seed mean)", justify="right")
    table.caption = "c/p/f/r: complete/pruned/failed/running"
    table.caption_justify = "left"
    for row in rows:
        table.add_row(*row)
    return table


@app.command()
def status(
    sweep_id: Annotated[int | None, typer.Argument(help="A sweep id; omit to list sweeps.")] = None,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """List sweeps, or show one sweep's progress."""
    with api_errors(server), make_client(server, token) as client:
        if sweep_id is None:
            console.print(sweeps_list(client.get("/api/sweeps", params={"limit": 100})))
            return
        sweep = client.get(f"/api/sweeps/{sweep_id}")
    table = new_table(f"Sweep {sweep['id']}: {sweep['name']}")
    table.add_column("field")
    table.add_column("value")
    best = sweep.get("best") or {}
    eta = sweep.get("eta_seconds")
    rows = [
        ("status", sweep.get("activity") or sweep["status"]),
        ("task", (sweep.get("task") or {}).get("name", "-")),
        ("progress", f"{sweep.get('finished', 0)}/{sweep['n_trials']}"),
        *((k, str(v)) for k, v in (sweep.get("counts") or {}).items()),
        ("best config (seed mean)", best_text(sweep)),
        ("best trial", fmt(best.get("trial_number"))),
        (
            "best single run",
            "-"
            if best.get("best_single_value") is None
            else f"{fmt(best['best_single_value'])} (trial {best.get('best_single_trial_number')}"
            "; one seed, not the config's value)",
        ),
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
    """Print a sweep's best configs (ready-to-use optimizer kwargs), and Lion against AdamW
    when the sweep has a baseline arm."""
    with api_errors(server), make_client(server, token) as client:
        answer = client.get(f"/api/sweeps/{sweep_id}/best", params={"k": k})
        if as_json:
            typer.echo(json.dumps(answer, indent=2))
            return
        print_best(answer)
        print_arms(client, sweep_id)


# -- the scaling rule ------------------------------------------------------------------------


def rule_table(title: str, rows: dict[str, Any]) -> Table:
    """A two-column table of a rule's numbers."""
    table = new_table(title)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, fmt(value))
    return table


def print_sweep_rule(fit: dict[str, Any], sweep_id: int) -> None:
    """Print a sweep's fitted lr × weight-decay answer: verdict, intervals, transfer."""
    verdict = fit["verdict"]
    colour = {"valley": "green", "per_axis": "green", "lr_only": "cyan", "wd_only": "cyan"}.get(
        verdict, "yellow" if verdict == "boundary" else "red"
    )
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
    if opt:  # only what the verdict shows: an axis or a value it rules out is null
        if opt.get("lr") is not None:
            rows["optimum lr"] = f"{fmt(opt['lr'])} ({interval_text(opt['lr_ci'])})"
        if opt.get("weight_decay") is not None:
            rows["optimum weight decay"] = (
                f"{fmt(opt['weight_decay'])} ({interval_text(opt['weight_decay_ci'])})"
            )
        if opt.get("value") is not None:
            rows["predicted objective"] = f"{fmt(opt['value'])} ({interval_text(opt['value_ci'])})"
    stab = fit.get("stability")
    if stab and stab.get("lr_diverged_min") is not None:
        rows["training diverges"] = (
            f"from lr {fmt(stab['lr_diverged_min'])} ({stab['n_diverged']} diverged; highest "
            f"lr that trained below it {fmt(stab.get('lr_stable_max'))})"
        )
    nd = fit.get("no_decay")
    if nd:
        rows["no decay (λ = 0) − optimum"] = (
            f"{fmt(nd['difference'])} ({interval_text(nd['difference_ci'])})"
        )
    if fit.get("design") == "one_at_a_time":
        rows["design"] = "one at a time (per-axis optimum; slope not identifiable)"
    if fit.get("on_boundary"):
        rows["at the trials' edge"] = ", ".join(fit.get("boundary_edges") or [])
    best = fit.get("best")
    if best:
        rows["best config"] = (
            f"trial {best['trial_number']}: lr {fmt(best['lr'])}, weight decay "
            f"{fmt(best['weight_decay'])}, {fmt(best['value'])}"
        )
    rows["noise sd (seeds)"] = fmt(fit.get("noise_sd"))
    on_log = fit.get("value_scale") == "log"
    rows["residual sd (fit, ln scale)" if on_log else "residual sd (fit)"] = fmt(
        fit.get("residual_sd")
    )
    if fit.get("n_imputed"):
        rows["pruned trials imputed"] = str(fit["n_imputed"])
    left = fit.get("left_out") or {}
    rows["trials fitted"] = (
        f"{fit['n']} (left out: " + ", ".join(f"{v} {k}" for k, v in left.items() if v) + ")"
        if any(left.values())
        else str(fit["n"])
    )
    if fit.get("width") is not None:
        rows["sweep width"] = f"{fmt(fit['width'])} ({fit.get('width_param')})"
    table = new_table("Fitted lr × weight-decay surface")
    table.add_column("quantity")
    table.add_column("estimate (90% CI)")
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)
    for note in fit.get("notes") or []:
        console.print(note, highlight=False, style="dim")
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
            "no lr–weight-decay trade-off is drawn or moved: the verdict is not 'valley'",
            highlight=False,
        )


RULE_FLAGS = {"width": "--width", "width_rule": "--width-rule", "from_width": "--from-width"}
"""The query params of the rule endpoints, as the flags of ``rule`` and ``ladder rule``."""


@contextmanager
def flags_named(flags: dict[str, str]) -> Iterator[None]:
    """Name the request fields of a 422 as the command's flags (``give from_width`` becomes
    ``give --from-width``): what the user typed, not what the HTTP API calls it."""
    try:
        yield
    except ApiError as exc:
        if exc.status_code != 422 or not isinstance(exc.detail, list):
            raise
        raise ApiError(exc.status_code, [flag_item(item, flags) for item in exc.detail]) from None


def flag_item(item: Any, flags: dict[str, str]) -> Any:
    """One 422 item with its field (``loc``) and the snake_case field names in its message
    replaced by their flags."""
    if not isinstance(item, dict) or "msg" not in item:
        return item
    loc = [p for p in item.get("loc", []) if p not in ("body", "query", "path")]
    msg = str(item["msg"])
    for name, flag in flags.items():
        if "_" in name:  # a plain word ("width") may be prose; an identifier is a field
            msg = re.sub(rf"\b{name}\b", flag, msg)
    if len(loc) == 1 and loc[0] in flags:
        loc = [flags[loc[0]]]
    return {**item, "loc": loc, "msg": msg}


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
        with api_errors(server), make_client(server, token) as client, flags_named(RULE_FLAGS):
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


# -- width ladders ---------------------------------------------------------------------------

ladder_app = typer.Typer(
    help="Width ladders: one sweep per width, and how the best lr and weight decay move "
    "with width.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(ladder_app, name="ladder")

LadderId = Annotated[int, typer.Argument(help="The ladder id.")]

#: Colours of a ladder rule's verdicts (any other is red).
LADDER_VERDICT_COLOURS = {
    "rule_identified": "green",
    "indistinguishable": "cyan",
    "insufficient": "yellow",
}
#: Colours of a confirmation's verdicts (any other is yellow).
CONFIRM_VERDICT_COLOURS = {
    "transfer_better": "green",
    "no_difference": "cyan",
    "untransferred_better": "red",
}


def width_text(ladder: dict[str, Any], width: float) -> str:
    """``param=width`` of a ladder's width param."""
    return f"{ladder['param']}={fmt(width)}"


def ladder_sweeps(ladder: dict[str, Any]) -> list[dict[str, Any]]:
    """A ladder's rungs, then its confirmations."""
    return [*ladder.get("rungs", []), *ladder.get("confirmations", [])]


def sweeps_table(ladder: dict[str, Any]) -> Table:
    """A table of a ladder's rungs and confirmations and where each stands."""
    table = new_table("Rungs and confirmations")
    table.add_column(ladder["param"], justify="right")
    table.add_column("sweep", justify="right")
    table.add_column("role")
    table.add_column("status")
    table.add_column("finished", justify="right")
    table.add_column("progress", justify="right")
    for sweep in ladder_sweeps(ladder):
        table.add_row(
            fmt(sweep["width"]),
            str(sweep["sweep_id"]),
            sweep["role"],
            sweep["status"],
            f"{sweep['finished']}/{sweep['n_trials']}",
            f"{sweep['progress']:.0%}",
        )
    return table


def status_counts(ladder: dict[str, Any]) -> str:
    """``2 cancelled, 1 complete``: how many of a ladder's sweeps are in each status."""
    counts: dict[str, int] = {}
    for sweep in ladder_sweeps(ladder):
        counts[sweep["status"]] = counts.get(sweep["status"], 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


@ladder_app.command("submit")
def ladder_submit(
    spec_file: Annotated[
        Path,
        typer.Argument(
            help="Ladder spec, YAML or JSON: a sweep spec plus ladder: {param, widths, scale_box}.",
            metavar="FILE",
        ),
    ],
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting twice with the same key creates one ladder.")
    ] = None,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Submit a width ladder: one sweep (rung) per width."""
    spec = load_spec(spec_file)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    with api_errors(server), make_client(server, token) as client:
        ladder = client.post("/api/ladders", json=spec, headers=headers)
    rungs = ladder["rungs"]
    trials = {rung["n_trials"] for rung in rungs}
    each = f" of {trials.pop()} trials" if len(trials) == 1 else ""
    console.print(
        f"Submitted ladder [bold]{ladder['id']}[/] ({escape(ladder['name'])}, "
        f"{len(rungs)} rungs{each}):",
        highlight=False,
    )
    base = server.rstrip("/")
    for rung in rungs:
        console.print(
            f"  {escape(width_text(ladder, rung['width']))}: sweep {rung['sweep_id']}  "
            f"{base}/sweeps/{rung['sweep_id']}",
            highlight=False,
            soft_wrap=True,
        )


@ladder_app.command("status")
def ladder_status(
    ladder_id: Annotated[int | None, typer.Argument(help="A ladder id; omit to list them.")] = None,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """List ladders, or show one ladder's rungs and confirmations."""
    with api_errors(server), make_client(server, token) as client:
        if ladder_id is None:
            page = client.get("/api/ladders", params={"limit": 100})
        else:
            ladder = client.get(f"/api/ladders/{ladder_id}")
    if ladder_id is None:
        table = new_table(f"Ladders ({page['total']})")
        table.add_column("id", justify="right")
        table.add_column("name", no_wrap=True)
        table.add_column("task", no_wrap=True)
        table.add_column("widths")
        table.add_column("status")
        table.add_column("finished", justify="right")
        table.add_column("confirms", justify="right")
        for lad in page["items"]:
            rungs = lad["rungs"]
            table.add_row(
                str(lad["id"]),
                escape(lad["name"]),
                escape(lad["task"]["name"]),
                ", ".join(fmt(w) for w in lad["widths"]),
                lad["status"],
                f"{sum(r['finished'] for r in rungs)}/{sum(r['n_trials'] for r in rungs)}",
                str(len(lad["confirmations"])),
            )
        console.print(table)
        return
    params = ", ".join(f"{k}={v}" for k, v in (ladder["task"].get("params") or {}).items())
    console.print(
        f"ladder [bold]{ladder['id']}[/] ({escape(ladder['name'])}): [bold]{ladder['status']}[/], "
        f"{ladder['progress']:.0%} of the rungs' trials finished",
        highlight=False,
    )
    console.print(
        escape(
            f"task {ladder['task']['name']}" + (f" ({params})" if params else "") + f"; width "
            f"param {ladder['param']!r}; box {ladder['scale_box']}"
        ),
        highlight=False,
    )
    console.print(sweeps_table(ladder))


def print_ladder_rule(fit: dict[str, Any], width: float | None = None) -> None:
    """Print a ladder's width rule: verdict, the rungs' optima, the exponents, the candidate
    rules, the prediction at ``width`` and the confirmations."""
    lad = {"param": fit["param"]}
    verdict = fit["verdict"]
    colour = LADDER_VERDICT_COLOURS.get(verdict, "red")
    console.print(
        f"ladder {fit['ladder_id']}: verdict [bold {colour}]{verdict}[/]", highlight=False
    )
    console.print(escape(fit["reason"]), highlight=False)
    if not fit["complete"]:
        warn("not every rung is complete: the answer may change")

    table = new_table("Rungs' optima (90% CI)")
    table.add_column(fit["param"], justify="right")
    table.add_column("verdict")
    table.add_column("lr", justify="right")
    table.add_column("weight decay", justify="right")
    table.add_column("fit uses")
    for rung in fit["rungs"]:
        state = rung["verdict"] or "-"
        if rung["status"] != "complete":
            state += f" ({rung['status']})"
        uses = ", ".join("wd" if u == "weight_decay" else u for u in rung["used"])
        table.add_row(
            fmt(rung["width"]),
            state,
            estimate_text(rung.get("lr"), rung.get("lr_ci"), stacked=True),
            estimate_text(rung.get("weight_decay"), rung.get("weight_decay_ci"), stacked=True),
            uses or "nothing",
        )
    console.print(table)
    for rung in fit["rungs"]:
        if rung["verdict"] not in ("valley", "lr_only") or "weight_decay" not in rung["used"]:
            console.print(
                escape(f"{width_text(lad, rung['width'])}: {rung['reason']}"),
                style="dim",
                highlight=False,
            )

    exponents = {
        "lr": ("lr_exponent", "lr_exponent_ci"),
        "weight decay": ("wd_exponent", "wd_exponent_ci"),
        "product η·λ": ("product_exponent", "product_exponent_ci"),
    }
    if any(fit.get(key) is not None for key, _ in exponents.values()):
        table = new_table("Width exponents")
        table.add_column("quantity")
        table.add_column("exponent", justify="right")
        table.add_column("90% CI", justify="right")
        for name, (key, ci) in exponents.items():
            table.add_row(name, fmt(fit.get(key)), interval_text(fit.get(ci)))
        console.print(table)
        at_ref = f"lr {fmt(fit.get('lr_at_reference'))}"
        if fit.get("wd_at_reference") is not None:
            at_ref += f", weight decay {fmt(fit['wd_at_reference'])}"
        console.print(
            escape(
                f"fitted at {width_text(lad, fit['reference_width'])} (the rungs' geometric "
                f"mean): {at_ref}"
            ),
            highlight=False,
        )

    if fit["rules"]:
        table = new_table("Candidate rules")
        for column in ("rule", "lr exp", "wd exp", "χ²", "dof", "p", "rel. lik.", "fits"):
            table.add_column(column, justify="left" if column in ("rule", "fits") else "right")
        for score in fit["rules"]:
            name = score["name"] + (" *" if score["name"] == fit.get("best_rule") else "")
            table.add_row(
                name,
                fmt(score["lr_exponent"]),
                fmt(score["wd_exponent"]),
                fmt(score["chi2"]),
                fmt(score["dof"]),
                fmt(score["p_value"]),
                fmt(score["relative_likelihood"]),
                "yes" if score["consistent"] else "no",
            )
        console.print(table)
        console.print(
            "* best rule; fits: p ≥ 0.05; rel. lik.: exp(-(χ² - min χ²)/2)",
            style="dim",
            highlight=False,
        )

    pred = fit.get("prediction")
    if pred:
        moved = pred["weight_decay_moved"]
        rows = {
            "lr": estimate_text(pred["lr"], pred["lr_ci"]),
            "weight decay": estimate_text(pred["weight_decay"], pred["weight_decay_ci"]),
            "weight decay moved": "yes" if moved else "no: the widest rung's best, unmoved",
            "objective": estimate_text(pred.get("value"), pred.get("value_ci")),
        }
        table = new_table(f"Prediction at {width_text(lad, pred['width'])}")
        table.add_column("quantity")
        table.add_column("estimate (90% CI)", justify="right")
        for key, value in rows.items():
            table.add_row(key, value)
        console.print(table)
        console.print(escape(pred["note"]), style="dim", highlight=False)
    elif width is not None:
        console.print(
            escape(
                f"no prediction at {width_text(lad, width)}: the rungs give no lr exponent "
                f"(verdict {verdict})"
            ),
            highlight=False,
        )

    for conf in fit["confirmations"]:
        print_confirmation(conf, lad)


def print_confirmation(conf: dict[str, Any], lad: dict[str, Any]) -> None:
    """Print one confirmation: predicted against achieved objective per arm, the difference
    of the transferred and untransferred configs, the verdict and its note."""
    table = new_table(f"Confirmation at {width_text(lad, conf['width'])}")
    table.add_column("arm")
    table.add_column("lr", justify="right")
    table.add_column("weight decay", justify="right")
    table.add_column("seeds", justify="right")
    table.add_column("objective (90% CI)", justify="right")
    pred = conf.get("predicted")
    if pred:
        table.add_row(
            "predicted",
            fmt(pred["lr"]),
            fmt(pred["weight_decay"]),
            "",
            estimate_text(pred.get("value"), pred.get("value_ci"), stacked=True),
        )
    for name in ("transferred", "untransferred"):
        arm = conf[name]
        table.add_row(
            name,
            fmt(arm["lr"]),
            fmt(arm["weight_decay"]),
            str(arm["n"]),
            estimate_text(arm.get("mean"), arm.get("ci"), stacked=True),
        )
    if conf.get("difference") is not None:
        table.add_row(
            "difference",
            "",
            "",
            "",
            estimate_text(conf["difference"], conf.get("difference_ci"), stacked=True),
        )
    console.print(table)
    if conf["untransferred"].get("source"):
        console.print(
            escape(f"untransferred: {conf['untransferred']['source']}, unmoved"),
            style="dim",
            highlight=False,
        )
    verdict = conf["verdict"]
    colour = CONFIRM_VERDICT_COLOURS.get(verdict, "yellow")
    console.print(
        f"sweep {conf['sweep_id']} {conf['status']}: verdict [bold {colour}]{verdict}[/]",
        highlight=False,
    )
    if verdict != "pending":
        console.print(escape(conf["note"]), style="dim", highlight=False)


@ladder_app.command("rule")
def ladder_rule(
    ladder_id: LadderId,
    width: Annotated[
        float | None, typer.Option(help="Predict the lr and weight decay at this width.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")] = False,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """How the best lr and weight decay move with width, a prediction, the confirmations."""
    params = {"width": width} if width is not None else None
    with api_errors(server), make_client(server, token) as client, flags_named(RULE_FLAGS):
        fit = client.get(f"/api/ladders/{ladder_id}/rule", params=params)
    if as_json:
        typer.echo(json.dumps(fit, indent=2))
    else:
        print_ladder_rule(fit, width)


@ladder_app.command("confirm")
def ladder_confirm(
    ladder_id: LadderId,
    width: Annotated[float, typer.Option(help="The new width to run the prediction at.")],
    seeds: Annotated[int, typer.Option(help="Seeds for each of the two arms (≥ 2).")] = 3,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Run the prediction at a new width beside the widest rung's own optimum, unmoved."""
    body = {"width": int(width) if width.is_integer() else width, "seeds": seeds}
    flags = {"width": "--width", "seeds": "--seeds"}
    with api_errors(server), make_client(server, token) as client, flags_named(flags):
        ladder = client.post(f"/api/ladders/{ladder_id}/confirm", json=body)
    conf = max(ladder["confirmations"], key=lambda c: c["sweep_id"])
    console.print(
        escape(
            f"Confirming ladder {ladder['id']} at {width_text(ladder, conf['width'])}: sweep "
            f"{conf['sweep_id']} runs the predicted lr and weight decay beside the widest rung's "
            f"own optimum, unmoved, {seeds} seeds each ({conf['n_trials']} trials)"
        ),
        highlight=False,
    )
    console.print(f"the outcome: lionsweep ladder rule {ladder['id']}", highlight=False)


def set_ladder_status(ladder_id: int, action: str, server: str, token: str | None) -> None:
    """POST a lifecycle ``action`` (cancel, resume) and print where the ladder stands."""
    with api_errors(server), make_client(server, token) as client:
        ladder = client.post(f"/api/ladders/{ladder_id}/{action}")
    console.print(
        f"ladder {ladder['id']} {ladder['status']}: {status_counts(ladder)}", highlight=False
    )


@ladder_app.command("cancel")
def ladder_cancel(
    ladder_id: LadderId, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None
) -> None:
    """Cancel every rung and confirmation that is not complete."""
    set_ladder_status(ladder_id, "cancel", server, token)


@ladder_app.command("resume")
def ladder_resume(
    ladder_id: LadderId, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None
) -> None:
    """Resume a cancelled ladder's rungs and confirmations."""
    set_ladder_status(ladder_id, "resume", server, token)


@ladder_app.command("delete")
def ladder_delete(
    ladder_id: LadderId, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None
) -> None:
    """Delete a ladder, its sweeps and their Optuna studies."""
    with api_errors(server), make_client(server, token) as client:
        client.delete(f"/api/ladders/{ladder_id}")
    console.print(f"deleted ladder {ladder_id}, its sweeps and their studies", highlight=False)


# -- sweep lifecycle ------------------------------------------------------------------------

SweepId = Annotated[int, typer.Argument(help="The sweep id.")]


def set_sweep_status(sweep_id: int, action: str, server: str, token: str | None) -> None:
    """POST a lifecycle ``action`` (cancel, resume) to a sweep and print where it stands."""
    with api_errors(server), make_client(server, token) as client:
        sweep = client.post(f"/api/sweeps/{sweep_id}/{action}")
    console.print(f"sweep {sweep['id']} {sweep['status']}: {counts_text(sweep)}", highlight=False)


@app.command()
def cancel(sweep_id: SweepId, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None) -> None:
    """Cancel a sweep: no new trials; running ones are told to stop."""
    set_sweep_status(sweep_id, "cancel", server, token)


@app.command()
def resume(sweep_id: SweepId, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None) -> None:
    """Resume a cancelled sweep."""
    set_sweep_status(sweep_id, "resume", server, token)


@app.command()
def delete(sweep_id: SweepId, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None) -> None:
    """Delete a sweep and its Optuna study (its trials and their values)."""
    with api_errors(server), make_client(server, token) as client:
        client.delete(f"/api/sweeps/{sweep_id}")
    console.print(f"deleted sweep {sweep_id} and its study", highlight=False)


# -- import ---------------------------------------------------------------------------------

IMPORT_MAX_BYTES = 8 * 1024 * 1024
"""The largest file ``lionsweep import`` sends (the server's body cap may be lower: 1 MiB by
default, LIONSWEEP_MAX_BODY_BYTES)."""
IMPORT_TIMEOUT = 300.0
"""Seconds ``lionsweep import`` waits for the server's answer (1000 rows take ~25 s on SQLite)."""
IMPORT_ERRORS_SHOWN = 20
"""The most bad rows ``lionsweep import`` prints (the rest are counted)."""


def pairs(items: list[str], option: str) -> dict[str, str]:
    """``SRC=DEST`` options as a dict (the last ``=`` splits, so a source may contain one)."""
    out = {}
    for item in items:
        src, eq, dest = item.rpartition("=")
        if not eq or not src or not dest:
            raise fail(f"{option} {item!r}: expected SRC=DEST", EXIT_CONFIG)
        out[src] = dest
    return out


def import_error_lines(detail: Any) -> list[str]:
    """One line per bad row of an import's 422 (``row 3, column lr: …``), at most
    :data:`IMPORT_ERRORS_SHOWN` of them."""
    if not isinstance(detail, list):
        return error_lines(detail)
    lines = []
    for item in detail:
        if isinstance(item, dict) and "row" in item:
            where = [f"row {item['row']}"] if item.get("row") is not None else []
            where += [f"column {item['column']}"] if item.get("column") is not None else []
            lines.append(", ".join(where) + ": " + str(item["msg"]) if where else str(item["msg"]))
        else:
            lines.extend(error_lines([item]))
    if len(lines) > IMPORT_ERRORS_SHOWN:
        lines = [*lines[:IMPORT_ERRORS_SHOWN], f"… and {len(lines) - IMPORT_ERRORS_SHOWN} more"]
    return lines


@app.command("import")
def import_runs(
    file: Annotated[
        Path, typer.Argument(help="Runs made elsewhere: CSV, JSON lines or a W&B runs CSV export.")
    ],
    sweep: Annotated[int, typer.Option("--sweep", help="The sweep to add them to.")],
    fmt_: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="csv, jsonl or wandb (a W&B runs-table export); default from the file's suffix.",
        ),
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="SRC=DEST: read column SRC as DEST (lr, value, state…)."),
    ] = None,
    ignore: Annotated[
        list[str] | None, typer.Option("--ignore", help="A column to leave out.")
    ] = None,
    states: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            help="SRC=STATE: a source state as complete, diverged, failed or skip "
            "(e.g. crashed=diverged).",
        ),
    ] = None,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Add finished runs made elsewhere to a sweep as trials, all or nothing.

    Columns: lr, weight_decay, beta1, beta2 (or betas), warmup_steps, batch_size, seed, value,
    state (complete, diverged or failed; complete when absent). A bad row writes nothing.
    """
    import uuid

    kind = fmt_ or {".jsonl": "jsonl", ".ndjson": "jsonl"}.get(file.suffix.lower(), "csv")
    if kind not in ("csv", "jsonl", "wandb"):
        raise fail(f"--format must be csv, jsonl or wandb (got {kind!r})", EXIT_CONFIG)
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror or exc}", EXIT_CONFIG) from None
    if size > IMPORT_MAX_BYTES:
        raise fail(
            f"{file} is {size} bytes; an import may be at most {IMPORT_MAX_BYTES} bytes "
            f"({IMPORT_MAX_BYTES // 2**20} MiB): split the file"
        )
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file}: {exc}", EXIT_CONFIG) from None
    body = {
        "format": kind,
        "text": text,
        "mapping": pairs(mapping or [], "--map"),
        "ignore": ignore or [],
        "states": pairs(states or [], "--state"),
        "source": file.name[:200],
    }
    # One key per run of the command: a retry after a lost reply imports nothing twice.
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    import logging

    from worker.client import Client

    logging.getLogger("worker.client").setLevel(logging.ERROR)  # as make_client: no retry noise
    client = Client(server, token, attempts=3, deadline=5.0, timeout=IMPORT_TIMEOUT)
    with api_errors(server), client:
        try:
            out = client.post(f"/api/sweeps/{sweep}/trials:import", json=body, headers=headers)
        except ApiError as exc:
            if exc.status_code == 413:
                raise fail(
                    f"the server refuses a body this large ({exc.detail}): split the file, or "
                    "raise the server's LIONSWEEP_MAX_BODY_BYTES"
                ) from None
            if exc.status_code != 422:
                raise
            raise fail_lines(import_error_lines(exc.detail)) from None
    console.print(
        f"imported {out['imported']} trials ({out['complete']} complete, {out['diverged']} "
        f"diverged, {out['failed']} failed) into sweep {out['sweep_id']}"
        + (f"; {out['skipped']} rows skipped" if out.get("skipped") else ""),
        highlight=False,
    )
    if out.get("ignored_columns"):
        warn(f"columns left out: {', '.join(out['ignored_columns'])}")


# -- bench ----------------------------------------------------------------------------------


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run bench/optim_step.py (Lion step timings); extra arguments are passed through."""
    script = Path(__file__).resolve().parents[2] / "bench" / "optim_step.py"
    if not script.is_file():
        raise fail(
            f"{script} not found: benchmarks need the source tree (git checkout)", EXIT_CONFIG
        )
    code = subprocess.call([sys.executable, str(script), *ctx.args], cwd=script.parent.parent)
    raise typer.Exit(code)
