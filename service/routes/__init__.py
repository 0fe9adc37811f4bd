"""Thin HTTP handlers: parse, authorize, call one function of ``service.sweeps``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.sweeps import Sweeps


def get_sweeps(request: Request) -> Sweeps:
    """The app's sweep service."""
    return request.app.state.sweeps


SweepsDep = Annotated[Sweeps, Depends(get_sweeps)]
