"""The ``lionsweep`` command line (Typer + rich)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="lionsweep",
    help="Hyperparameter sweeps for the Lion optimizer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
) -> None:
    """Run the API server (migrates the database first)."""
    from service.app import serve as serve_app
    from service.settings import Settings

    serve_app(Settings(), host=host, port=port)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all database migrations (alembic upgrade head)."""
    from service.db import upgrade
    from service.settings import Settings

    upgrade(Settings())


@token_app.command("create")
def token_create(
    scope: Annotated[
        list[str], typer.Option("--scope", help="submit, worker or read; repeat for several.")
    ],
    name: Annotated[str | None, typer.Option(help="A label for the token.")] = None,
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from service.auth import create_token
    from service.settings import Settings

    typer.echo(create_token(Settings(), scopes=scope, name=name))


@app.command()
def worker(
    server: Annotated[
        str, typer.Option(envvar="LIONSWEEP_SERVER", help="API base URL.")
    ] = "http://127.0.0.1:8000",
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
        )
    )


if __name__ == "__main__":
    app()
