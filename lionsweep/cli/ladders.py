"""``lionsweep ladder …``: width ladders (one sweep per width) and how the best lr and weight
decay move with width."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lionsweep.cli.commands import RULE_FLAGS, flags_named, load_spec
from lionsweep.cli.render import (
    ladders_list,
    print_ladder,
    print_ladder_rule,
    status_counts,
    width_text,
)
from lionsweep.cli.root import app
from protocol import DEFAULT_SERVER
from worker.cli import ServerOpt, TokenOpt, api_errors, console, make_client

ladder_app = typer.Typer(
    help="Width ladders: one sweep per width, and how the best lr and weight decay move "
    "with width.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(ladder_app, name="ladder")

LadderId = Annotated[int, typer.Argument(help="The ladder id.")]


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
        console.print(ladders_list(page))
    else:
        print_ladder(ladder)


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
