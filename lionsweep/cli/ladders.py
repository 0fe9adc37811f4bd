"""``lionsweep ladder …``: ladders (one sweep per rung: a width, or a point over width,
training length and batch size) and how the best lr and weight decay move along each axis."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from lionsweep.cli.commands import RULE_FLAGS, load_spec
from lionsweep.cli.render import (
    is_joint,
    ladders_list,
    print_ladder,
    print_ladder_rule,
    status_counts,
    sweep_text,
)
from lionsweep.cli.root import app
from protocol import DEFAULT_SERVER
from worker.cli import ServerOpt, TokenOpt, api_errors, console, fail, make_client
from worker.client import ApiError

ladder_app = typer.Typer(
    help="Ladders: one sweep per rung (a width, or a point over width, steps and batch "
    "size), and how the best lr and weight decay move along each axis.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(ladder_app, name="ladder")

LadderId = Annotated[int, typer.Argument(help="The ladder id.")]
StepsOpt = Annotated[
    float | None, typer.Option(help="The training length (a ladder with a steps axis).")
]
BatchOpt = Annotated[
    float | None, typer.Option(help="The batch size (a ladder with a batch axis).")
]
LADDER_FLAGS = {**RULE_FLAGS, "steps": "--steps", "batch_size": "--batch-size", "seeds": "--seeds"}
"""The query and body fields of ``ladder rule`` and ``ladder confirm``, as their flags."""


GIVE_FIELD = re.compile(r"\bgive (width|steps|batch_size) too\b")
GIVE_POINT = "give the point to confirm at: width, steps and/or batch_size"


@contextmanager
def point_flags_named() -> Iterator[None]:
    """Name a 422's point fields as this group's flags: the field (``loc``) always, and in the
    message where it asks for a field (``give batch_size too`` becomes ``give --batch-size
    too``), not where the same word is an axis's name."""
    try:
        yield
    except ApiError as exc:
        if exc.status_code != 422 or not isinstance(exc.detail, list):
            raise
        raise ApiError(exc.status_code, [point_item(item) for item in exc.detail]) from None


def point_item(item: Any) -> Any:
    """One 422 item with its field, and the fields its message asks for, as flags."""
    if not isinstance(item, dict) or "msg" not in item:
        return item
    loc = [p for p in item.get("loc", []) if p not in ("body", "query", "path")]
    if len(loc) == 1 and loc[0] in LADDER_FLAGS:
        loc = [LADDER_FLAGS[loc[0]]]
    msg = GIVE_FIELD.sub(lambda m: f"give {LADDER_FLAGS[m.group(1)]} too", str(item["msg"]))
    msg = msg.replace(
        GIVE_POINT, "give the point to confirm at: --width, --steps and/or --batch-size"
    )
    return {**item, "loc": loc, "msg": msg}


def point_params(width: float | None, steps: float | None, batch_size: float | None) -> dict:
    """The point asked for, by query (and confirmation body) field: those given, whole
    numbers as integers."""
    given = {"width": width, "steps": steps, "batch_size": batch_size}
    return {k: int(v) if float(v).is_integer() else v for k, v in given.items() if v is not None}


@ladder_app.command("submit")
def ladder_submit(
    spec_file: Annotated[
        Path,
        typer.Argument(
            help="Ladder spec, YAML or JSON: a sweep spec plus ladder: {param, widths, "
            "scale_box} or ladder: {rungs: [{axis: value, …}, …]}.",
            metavar="FILE",
        ),
    ],
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting twice with the same key creates one ladder.")
    ] = None,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Submit a ladder: one sweep (rung) per width, or per point of its rungs."""
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
            f"  {escape(sweep_text(ladder, rung))}: sweep {rung['sweep_id']}  "
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
    steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")] = False,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """How the best lr and weight decay move along each axis, a prediction (at --width,
    --steps, --batch-size: every axis the ladder varies), the confirmations."""
    params = point_params(width, steps, batch_size) or None
    with api_errors(server), make_client(server, token) as client, point_flags_named():
        fit = client.get(f"/api/ladders/{ladder_id}/rule", params=params)
    if as_json:
        typer.echo(json.dumps(fit, indent=2))
    else:
        print_ladder_rule(fit, width, asked=params)


@ladder_app.command("confirm")
def ladder_confirm(
    ladder_id: LadderId,
    width: Annotated[
        float | None, typer.Option(help="The new width to run the prediction at.")
    ] = None,
    steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    seeds: Annotated[int, typer.Option(help="Seeds for each arm (≥ 2).")] = 3,
    rules: Annotated[
        bool, typer.Option("--rules", help="Also run an arm per named rule's prediction.")
    ] = False,
    sweep_trials: Annotated[
        int | None,
        typer.Option(
            help="Also run a small sweep of this many trials at the point itself (≥ 8), to "
            "check the prediction against that sweep's best."
        ),
    ] = None,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Run the prediction at a new point (--width, --steps, --batch-size: every axis the
    ladder varies) beside the widest (one-axis) or nearest rung's own optimum, unmoved; where
    the data leave the weight decay open, also an arm per candidate weight decay; with
    --sweep-trials, a small sweep of the point's own as well."""
    body = {**point_params(width, steps, batch_size), "seeds": seeds}
    if rules:
        body["rules"] = True
    if sweep_trials is not None:
        body["sweep_trials"] = sweep_trials
    with api_errors(server), make_client(server, token) as client, point_flags_named():
        before = client.get(f"/api/ladders/{ladder_id}")
        ladder = client.post(f"/api/ladders/{ladder_id}/confirm", json=body)
    known = {c["sweep_id"] for c in before["confirmations"]}
    new = {c.get("role"): c for c in ladder["confirmations"] if c["sweep_id"] not in known}
    conf = new.get("confirm")
    if conf is not None:
        beside = "nearest" if is_joint(ladder) else "widest"
        console.print(
            escape(
                f"Confirming ladder {ladder['id']} at {sweep_text(ladder, conf)}: sweep "
                f"{conf['sweep_id']} runs the predicted lr and weight decay beside the {beside} "
                f"rung's own optimum, unmoved"
                + (
                    f", and {conf['n_trials'] // seeds - 2} more arms"
                    if conf["n_trials"] > 2 * seeds
                    else ""
                )
                + f", {seeds} seeds each ({conf['n_trials']} trials)"
            ),
            highlight=False,
        )
    own = new.get("target")
    if own is not None:
        added = "" if conf is not None else f"added to ladder {ladder['id']}'s confirmation: "
        console.print(
            escape(
                f"{added}sweep {own['sweep_id']} searches the point itself "
                f"({sweep_text(ladder, own)}; {own['n_trials']} trials, its top 3 configs re-run "
                f"with {seeds} fresh seeds)"
            ),
            highlight=False,
        )
    console.print(f"the outcome: lionsweep ladder rule {ladder['id']}", highlight=False)


def parse_pairs(items: list[str], flag: str, numbers: bool) -> dict[str, Any]:
    """``name=value`` items (comma-separated or repeated) as a dict; a bad one is refused,
    naming ``flag``."""
    out: dict[str, Any] = {}
    for item in (part for text in items for part in text.split(",") if part.strip()):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise fail(f"{flag}: expected name=value, not {item!r}")
        if numbers:
            try:
                number = float(value)
            except ValueError:
                raise fail(f"{flag}: {name} is not a number: {value!r}") from None
            out[name.strip()] = int(number) if number.is_integer() else number
        else:
            out[name.strip()] = value.strip()
    return out


@ladder_app.command("extend")
def ladder_extend(
    ladder_id: LadderId,
    rung: Annotated[
        list[str],
        typer.Option(
            help="A new rung as axis=value,… (repeat for more): every axis of the ladder."
        ),
    ],
    box: Annotated[
        str,
        typer.Option(help="fit: search around the current fit's prediction; ladder: its own box."),
    ] = "fit",
    span: Annotated[
        float, typer.Option(help="With --box fit: the box's reach, as a factor each way.")
    ] = 10.0,
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Add rungs to a ladder, each searching around where the fit expects its optimum."""
    body = {
        "rungs": [parse_pairs([r], "--rung", numbers=True) for r in rung],
        "box": box,
        "span": span,
    }
    with api_errors(server), make_client(server, token) as client:
        ladder = client.post(f"/api/ladders/{ladder_id}/rungs", json=body)
    added = sorted(ladder["rungs"], key=lambda r: r["sweep_id"])[-len(rung) :]
    base = server.rstrip("/")
    console.print(f"Added {len(added)} rungs to ladder {ladder['id']}:", highlight=False)
    for r in added:
        sid = r["sweep_id"]
        console.print(
            f"  {escape(sweep_text(ladder, r))}: sweep {sid}  {base}/sweeps/{sid}",
            highlight=False,
            soft_wrap=True,
        )


@ladder_app.command("from-sweeps")
def ladder_from_sweeps(
    sweeps: Annotated[list[int], typer.Argument(help="The sweeps, one rung each (3 or more).")],
    axis: Annotated[
        list[str],
        typer.Option(help="An axis as param=role (width, steps or batch); repeat for more."),
    ],
    name: Annotated[str, typer.Option(help="The ladder's name.")] = "ladder from sweeps",
    server: ServerOpt = DEFAULT_SERVER,
    token: TokenOpt = None,
) -> None:
    """Make a ladder of sweeps that exist (runs imported with ``lionsweep import``, or sweeps
    run before): each is a rung at the point its task params give; nothing new runs."""
    body = {"name": name, "sweeps": sweeps, "axes": parse_pairs(axis, "--axis", numbers=False)}
    with api_errors(server), make_client(server, token) as client:
        ladder = client.post("/api/ladders/from-sweeps", json=body)
    console.print(
        f"Made ladder {ladder['id']} of {len(ladder['rungs'])} sweeps; its fit: "
        f"lionsweep ladder rule {ladder['id']}",
        highlight=False,
    )


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
