"""The server's and admin sub-commands of ``lionsweep``: serve, db, token and up.

The top-level app (``lionsweep.cli``) composes them with the worker's and the client's
commands, and loads this module only for these commands. Commands that open the database
(``serve``, ``db upgrade``, ``token create|list|revoke``) exit 2 with one line for a malformed
``LIONSWEEP_*`` setting or a database that cannot be opened. ``up`` runs the server and
local agents under the worker's supervisor (``worker.supervisor``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from protocol import DEFAULT_HOST, DEFAULT_PORT
from worker import EXIT_CONFIG
from worker.cli import (
    api_errors,
    best_text,
    console,
    counts_text,
    fail,
    fail_lines,
    make_client,
)
from worker.client import ApiError, ServerUnreachable
from worker.supervisor import (
    Child,
    Supervisor,
    agent_children,
    lionsweep_command,
    visible_gpus,
)

if TYPE_CHECKING:
    from service.settings import Settings
    from worker.client import Client

app = typer.Typer(
    help="The server's and admin commands.", no_args_is_help=True, pretty_exceptions_enable=False
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")


def load_settings() -> Settings:
    """The service settings from the environment; a malformed ``LIONSWEEP_*`` exits 2.

    Each problem is one line naming the variable and the rule it breaks (never its value,
    which may be a password or a token).
    """
    from pydantic import ValidationError

    from service.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"LIONSWEEP_{'_'.join(str(p) for p in e['loc']).upper()}: "
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        ]
    raise fail_lines(problems, EXIT_CONFIG)


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn a database that cannot be opened (missing directory, refused connection, bad URL)
    into one line and exit 2, never a traceback."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    try:
        yield
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        hint = " (does its directory exist?)" if isinstance(exc, FileNotFoundError) else ""
        raise fail(
            f"cannot open the database: {exc.strerror or exc}{where}{hint}", EXIT_CONFIG
        ) from None
    except (OperationalError, ArgumentError) as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise fail(
            f"cannot open the database: {first[0] if first else type(exc).__name__}",
            EXIT_CONFIG,
        ) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
) -> None:
    """Run the API server (migrates the database first)."""
    from service.app import serve as serve_app

    settings = load_settings()
    with database_errors():
        serve_app(settings, host=host, port=port)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all database migrations (alembic upgrade head)."""
    from service.db import upgrade

    settings = load_settings()
    with database_errors():
        upgrade(settings)


TokenDb = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="The SQLite file of a `lionsweep up` (its --db); default: LIONSWEEP_DATABASE_URL, "
        "else ./lionsweep.db.",
    ),
]


def token_settings(db: Path | None, must_exist: bool = True) -> Settings:
    """The settings of the database whose tokens a ``token`` command manages: ``--db`` (a
    SQLite file) or the environment's. A SQLite file that does not exist is an error (exit 2)
    when ``must_exist``, so that listing tokens never creates an empty database."""
    from service.db import sqlite_path

    settings = load_settings()
    if db is not None:
        settings = settings.model_copy(update={"database_url": f"sqlite:///{db.resolve()}"})
    path = sqlite_path(settings)
    if must_exist and path is not None and not path.exists():
        raise fail(
            f"no database at {path}: give the --db of your `lionsweep up`, or set "
            "LIONSWEEP_DATABASE_URL to your server's",
            EXIT_CONFIG,
        )
    return settings


@token_app.command("create")
def token_create(
    scope: Annotated[
        list[str],
        typer.Option("--scope", help="submit, worker, read or admin; repeat for several."),
    ],
    name: Annotated[str | None, typer.Option(help="A label for the token.")] = None,
    db: TokenDb = None,
) -> None:
    """Create an API token and print it once (only its hash is stored). The first token of a
    database ends its open mode: its servers then ask every request for a token."""
    from service.auth import count_tokens, create_token
    from service.db import migrated

    settings = token_settings(db, must_exist=False)
    with database_errors():
        try:
            secret = create_token(settings, scopes=scope, name=name)
        except ValueError as exc:
            raise fail(str(exc), EXIT_CONFIG) from None
        with migrated(settings) as database:
            first = count_tokens(database) == 1
    typer.echo(secret)
    if first:
        typer.echo(
            "note: this is the database's first token, so its servers now ask every request "
            "for one (LIONSWEEP_TOKEN or --token), workers' and `lionsweep up`'s included: "
            "give them a token with the worker and submit scopes "
            "(`lionsweep token create --scope worker --scope submit`)",
            err=True,
        )


@token_app.command("list")
def token_list(db: TokenDb = None) -> None:
    """List the API tokens: id, name, scopes, when created and when revoked (never secrets)."""
    from rich.table import Table

    from service.auth import list_tokens
    from service.db import migrated

    settings = token_settings(db)
    with database_errors(), migrated(settings) as db:
        tokens = list_tokens(db)
    table = Table("id", "name", "scopes", "created", "revoked", box=None)
    for t in tokens:
        table.add_row(
            str(t.id),
            t.name or "",
            ",".join(t.scopes),
            f"{t.created_at:%Y-%m-%d %H:%M}",
            f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "",
        )
    console.print(table if tokens else "no tokens (the server is open on loopback)")


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (see `lionsweep token list`).")],
    db: TokenDb = None,
) -> None:
    """Revoke a token at once: every server refuses its next request."""
    from service.auth import revoke_token
    from service.db import migrated

    settings = token_settings(db)
    with database_errors(), migrated(settings) as db:
        found = revoke_token(db, token_id)
    if found is None:
        raise fail(f"no token with id {token_id}")
    typer.echo(f"revoked token {found.id} ({found.name or 'unnamed'}) at {found.revoked_at}")


# -- up: the embedded mode -------------------------------------------------------------------

DEMO_SPEC: dict[str, Any] = {
    "name": "demo",
    "task": {"name": "quadratic", "params": {}},
    "space": {
        "lr": {"low": 1e-4, "high": 3e-2, "log": True},
        "weight_decay": {"low": 1e-3, "high": 3.0, "log": True},
        "beta1": 0.9,
        "beta2": {"choices": [0.98, 0.99]},
    },
    "objective": {"metric": "val_loss", "direction": "minimize"},
    "sampler": {"name": "tpe", "seed": 0},
    "pruner": {"name": "median", "n_startup_trials": 10, "n_warmup_steps": 500},
    "n_trials": 60,
    "max_retries": 1,
    "enqueue": [{"lr": 1e-3, "weight_decay": 0.1}],
    "budget": {"max_steps": None},
}
DEMO_KEY = "lionsweep-up-demo"
#: Seconds the server gets to stop after its agents have stopped.
SERVER_STOP_GRACE = 15.0


def wait_healthy(
    url: str, server: Child, stopping: Callable[[], bool], timeout: float = 120.0
) -> bool:
    """Wait until ``url``/healthz answers; False when the server died or a stop was asked."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.running or stopping():
            return False
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def port_in_use(host: str, port: int) -> bool:
    """Whether something already accepts connections on ``host:port``."""
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def log_tail(path: Path, lines: int = 3) -> str:
    """The last few non-empty lines of a log file, joined by `` | ``."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join([line for line in text.splitlines() if line.strip()][-lines:])


def database_has_tokens(path: Path) -> bool:
    """Whether the SQLite database at ``path`` exists and holds API tokens (revoked included)."""
    if not path.exists():
        return False
    from service.auth import count_tokens
    from service.db import migrated
    from service.settings import Settings

    settings = Settings(database_url=f"sqlite:///{path}")
    with database_errors(), migrated(settings) as database:
        return count_tokens(database) > 0


def ensure_demo(client: Client) -> dict[str, Any]:
    """The demo sweep: the existing one (resumed), else a newly submitted one."""
    page = client.get("/api/sweeps", params={"limit": 100})
    for sweep in page["items"]:
        if sweep["name"] == DEMO_SPEC["name"] and sweep["task"]["name"] == "quadratic":
            return sweep
    return client.post("/api/sweeps", json=DEMO_SPEC, headers={"Idempotency-Key": DEMO_KEY})


def print_report(level: int, message: str) -> None:
    """The supervisor's warnings and errors (a crashed agent, a restart), on the console."""
    if level >= logging.WARNING:
        console.print(message, style="yellow", highlight=False, soft_wrap=True)


@app.command()
def up(
    demo: Annotated[bool, typer.Option("--demo", help="Also run a built-in demo sweep.")] = False,
    port: Annotated[int, typer.Option(help="Port of the server.")] = DEFAULT_PORT,
    host: Annotated[
        str, typer.Option(help="Bind address (loopback: no token needed).")
    ] = DEFAULT_HOST,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=0, help="Local workers (default: per GPU, else 1)."),
    ] = None,
    db: Annotated[Path, typer.Option(help="SQLite file (kept between runs).")] = Path(
        "lionsweep.db"
    ),
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="LIONSWEEP_TOKEN",
            help="Require this bearer token (all scopes) for every request; the local workers "
            "use it. The database keeps it, so later runs on it need it too.",
        ),
    ] = None,
) -> None:
    """Run everything on this machine: SQLite, the server and local workers (Ctrl-C stops)."""
    from worker.agent import agent_command

    db = db.resolve()
    probe = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if port_in_use(probe, port):
        raise fail(f"port {port} is already in use (another `lionsweep up`?); pick --port")
    if not token and database_has_tokens(db):
        raise fail(
            f"{db} has API tokens (from `lionsweep token create` or an earlier "
            "`lionsweep up --token`), so its server asks for one: pass --token with a token of "
            f"the worker and submit scopes (`lionsweep token list --db {db}` lists them)",
            EXIT_CONFIG,
        )
    logs = db.parent / ".lionsweep-logs"
    logs.mkdir(parents=True, exist_ok=True)
    url = f"http://{probe}:{port}"
    env = {**os.environ, "LIONSWEEP_DATABASE_URL": f"sqlite:///{db}", "PYTHONUNBUFFERED": "1"}
    server_env = env
    if token:
        env["LIONSWEEP_TOKEN"] = token
        # The server stores it as an all-scope token at start: from then on it asks for one.
        server_env = {**env, "LIONSWEEP_BOOTSTRAP_TOKEN": token}
    serve_command = lionsweep_command("serve", "--host", host, "--port", str(port))
    gpus = visible_gpus()
    count = (len(gpus) or 1) if workers is None else workers
    slots = [gpus[i % len(gpus)] if gpus else None for i in range(count)]
    agents = agent_children(
        agent_command(url, "cuda" if gpus else "cpu"), slots, cpu=not gpus, env=env, log_dir=logs
    )
    with Supervisor(report=print_report) as supervisor:
        server = supervisor.start(
            Child(
                "server",
                url,
                serve_command,
                server_env,
                restart=False,
                grace=SERVER_STOP_GRACE,
                log_path=logs / "server.log",
            )
        )
        console.print(f"lionsweep: database {db}; logs in {logs}", highlight=False, soft_wrap=True)
        if not wait_healthy(url, server, supervisor.stopping.is_set):
            if supervisor.stopping.is_set():
                raise typer.Exit(0)
            raise fail(f"the server did not start: {log_tail(logs / 'server.log', 1)}")
        sweep = None
        if demo:
            with api_errors(url), make_client(url, token) as client:
                sweep = ensure_demo(client)
        for agent in agents:
            supervisor.start(agent)
        console.print(f"[bold green]Dashboard:[/] {url}/", highlight=False, soft_wrap=True)
        if sweep is not None:
            console.print(
                f"Demo sweep {sweep['id']}: {url}/sweeps/{sweep['id']}",
                highlight=False,
                soft_wrap=True,
            )
        described = ", ".join(a.where for a in agents) if agents else "none"
        console.print(
            f"{len(agents)} worker(s): {described}. Press Ctrl-C to stop.",
            highlight=False,
            soft_wrap=True,
        )
        with make_client(url, token) as client:
            supervisor.run(tick=progress_printer(client, server, sweep))
        supervisor.stop(agents)  # the agents hand their trials back while the server still runs
    console.print("stopped. Run `lionsweep up` again to carry on where it stopped.")


def progress_printer(
    client: Client, server: Child, sweep: dict[str, Any] | None
) -> Callable[[], None]:
    """``up``'s round: fail when the server has exited; print the demo sweep's progress
    (polled every 3 s) when it changes."""
    last = ""
    next_poll = 0.0

    def tick() -> None:
        nonlocal last, next_poll
        if server.done:
            raise fail(f"the server exited (code {server.returncode}); see its log")
        if sweep is None or time.monotonic() < next_poll:
            return
        next_poll = time.monotonic() + 3.0
        try:
            current = client.get(f"/api/sweeps/{sweep['id']}")
        except (ApiError, ServerUnreachable):
            return
        re = current.get("reevaluation") or {}
        reruns = ""
        if re.get("status") in ("queued", "done"):
            reruns = f" + re-runs {re.get('finished')}/{re.get('trials')}"
        line = (
            f"{current['name']}: {current.get('finished', 0)}/{current['n_trials']}{reruns} "
            f"finished ({counts_text(current)}), best {best_text(current)}, {current['status']}"
        )
        if line != last:
            console.print(line, highlight=False, soft_wrap=True)
            last = line

    return tick


if __name__ == "__main__":
    from lionsweep.cli import app as lionsweep_app

    lionsweep_app(prog_name="lionsweep")
