"""The client commands of the root app (``submit``, ``status``, ``best``, ``rule``,
``cancel``, ``resume``, ``delete``, ``import``, ``bench``): each reads its arguments, asks the
server through ``worker.client.Client`` and prints the answer with :mod:`lionsweep.cli.render`."""

from __future__ import annotations

import json
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

from lionsweep.cli.render import (
    arms_text,
    print_best,
    print_sweep_rule,
    print_then_link,
    rule_table,
    sweep_table,
    sweeps_list,
)
from lionsweep.cli.root import app
from optim import scaling
from protocol import DEFAULT_SERVER
from protocol.yaml_errors import yaml_problem
from protocol.yaml_schema import config_loader
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
    make_client,
    warn,
)
from worker.client import ApiError

if TYPE_CHECKING:
    from worker.client import Client


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
    loader = config_loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader))
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


def follow_sweep(client: Client, sweep_id: int, interval: float = 1.0) -> dict[str, Any]:
    """Show a rich progress bar until the sweep stops running; return its last state.

    Its name, bar, trials done of all and elapsed time take one line, its counts and best
    config the next (wrapped at spaces), so an 80-column terminal cuts none of them."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Column
    from rich.text import Text

    class SweepProgress(Progress):
        def get_renderables(self) -> Iterator[Any]:
            yield self.make_tasks_table(self.tasks)
            for shown in self.tasks:
                yield Text(f"{shown.fields['counts']} · best {shown.fields['best']}")

    sweep = client.get(f"/api/sweeps/{sweep_id}")
    columns = (
        # a long name folds; the bar gives way before the numbers after it
        TextColumn("[bold]{task.description}", table_column=Column(overflow="fold")),
        BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=4)),
        MofNCompleteColumn(table_column=Column(no_wrap=True)),
        TimeElapsedColumn(table_column=Column(no_wrap=True)),
    )
    with SweepProgress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(sweep["name"], total=sweep["n_trials"], counts="", best="-")
        while True:
            re = sweep.get("reevaluation") or {}
            extra = re.get("trials") or 0  # queued re-runs, or those planned while pending
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
        print_arms(client, sweep["id"])  # as `lionsweep best` ends


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
    console.print(sweep_table(sweep))
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
    """Print a sweep's best configs (ready-to-use optimizer kwargs), and Lion against AdamW
    when the sweep has a baseline arm."""
    with api_errors(server), make_client(server, token) as client:
        with flags_named({"k": "--k"}):  # the server's cap on k, named as the flag
            answer = client.get(f"/api/sweeps/{sweep_id}/best", params={"k": k})
        if as_json:
            typer.echo(json.dumps(answer, indent=2))
            return
        print_best(answer)
        print_arms(client, sweep_id)


# -- the scaling rule ------------------------------------------------------------------------


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
        if width is not None or sigma is not None:
            raise fail(
                f"--{'width' if width is not None else 'sigma'} belongs to the width rule; "
                "--adamw-lr/--adamw-wd convert an AdamW config: give one or the other",
                EXIT_CONFIG,
            )
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
