"""Thin HTTP handlers: parse, authorize, call one function, shape the answer. Sweep and trial
routes call ``service.sweeps``, ladder routes ``service.ladders``; the token routes and the
health check call ``service.db.Database`` (tokens live there, and the health check asks the
database itself)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from service.ladders import Ladders
from service.sweeps import Sweeps


def get_sweeps(request: Request) -> Sweeps:
    """The app's sweep service."""
    return request.app.state.sweeps


SweepsDep = Annotated[Sweeps, Depends(get_sweeps)]


def get_ladders(request: Request) -> Ladders:
    """The app's ladder service."""
    return request.app.state.sweeps.ladders


LaddersDep = Annotated[Ladders, Depends(get_ladders)]

ID_MAX = 2**31 - 1
"""The largest SQL INTEGER: sweep ids and Optuna's trial ids and numbers are INTEGER columns
(PostgreSQL casts every bound id to INTEGER, so anything larger would fail in SQL)."""

Id = Annotated[int, Path(ge=0, le=ID_MAX)]
"""A sweep id, trial id or trial number in a path (422 beyond what the database stores)."""
