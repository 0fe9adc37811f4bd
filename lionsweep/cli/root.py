"""The root ``lionsweep`` app, and the sub-commands of other packages that it loads only when
named: the server's and admin commands (``lionsweep.server_cli``) and the worker's
(``worker.cli``)."""

from __future__ import annotations

import functools
import importlib
import importlib.util

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from worker import EXIT_CONFIG
from worker.cli import fail

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
