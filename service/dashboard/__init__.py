"""The results dashboard: HTML pages, bundled plotly.js, and optuna-dashboard under /optuna."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.settings import Settings


def mount_dashboard(app: FastAPI, settings: Settings) -> None:
    """Attach the dashboard pages and static files to ``app``."""
