"""The results dashboard: HTML pages, bundled plotly.js, and optuna-dashboard under /optuna.

The pages are static HTML shells; small JavaScript modules in ``static/`` fetch the JSON API
(``/api/...``) and draw with the plotly.js bundled in the ``plotly`` Python package, so the
dashboard works on a machine with no internet access.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from service.dashboard.optuna_mount import OptunaDashboard

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.settings import Settings

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATE_DIR = HERE / "templates"
LONG_CACHE = "public, max-age=31536000, immutable"
REDOC_JS_URL = "/static/vendor/redoc.standalone.js"
"""Where /redoc loads ReDoc from: its bundle with the logo served here (see :func:`redoc_js`)."""
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def plotly_js_path() -> Path:
    """Path of the minified plotly.js shipped inside the ``plotly`` Python package."""
    from importlib.resources import files

    return Path(str(files("plotly") / "package_data" / "plotly.min.js"))


@cache
def plotly_version() -> str:
    """Version of the ``plotly`` package (used to make the bundle URL cache-safe)."""
    import plotly

    return plotly.__version__


@cache
def redoc_js() -> str:
    """ReDoc's standalone bundle as the ``fastapi-offline`` package ships it, with the logo it
    would fetch from Redocly's CDN taken from this server instead (nothing leaves the host)."""
    from importlib.resources import files

    bundle = files("fastapi_offline") / "static" / "redoc.standalone.js"
    return bundle.read_text(encoding="utf-8").replace(REDOC_CDN_LOGO, "/static/redoc-logo.svg")


def render_page(name: str, settings: Settings) -> str:
    """Fill a page template with the asset URLs and the read-token flag."""
    text = (TEMPLATE_DIR / name).read_text(encoding="utf-8")
    plotly_url = f"/static/vendor/plotly-{plotly_version()}.min.js"
    read_token = "required" if settings.require_read_token else "optional"
    return text.replace("{{plotly_js}}", plotly_url).replace("{{read_token}}", read_token)


def mount_dashboard(app: FastAPI, settings: Settings) -> None:
    """Attach the dashboard pages and static files to ``app``."""
    pages = {
        name: render_page(name, settings) for name in ("index.html", "sweep.html", "ladder.html")
    }
    no_store = {"Cache-Control": "no-cache"}

    @app.get("/", include_in_schema=False)
    def sweeps_page() -> HTMLResponse:
        """The list of sweeps."""
        return HTMLResponse(pages["index.html"], headers=no_store)

    @app.get("/sweeps/{sweep_id}", include_in_schema=False)
    def sweep_page(sweep_id: int) -> HTMLResponse:
        """One sweep: counts, best config, plots and trials."""
        return HTMLResponse(pages["sweep.html"], headers=no_store)

    @app.get("/ladders/{ladder_id}", include_in_schema=False)
    def ladder_page(ladder_id: int) -> HTMLResponse:
        """One width ladder: its rungs, the width rule with its charts, and confirmations."""
        return HTMLResponse(pages["ladder.html"], headers=no_store)

    @app.get("/static/vendor/plotly-{version}.min.js", include_in_schema=False)
    def plotly_js(version: str) -> Response:
        """The plotly.js bundle from the installed ``plotly`` package, cached for a year."""
        if version != plotly_version():
            raise HTTPException(404, "unknown plotly.js version")
        return FileResponse(
            plotly_js_path(), media_type="text/javascript", headers={"Cache-Control": LONG_CACHE}
        )

    @app.get(REDOC_JS_URL, include_in_schema=False)
    def redoc_bundle() -> Response:
        """ReDoc's bundle for /redoc, its logo served from here."""
        return Response(redoc_js(), media_type="text/javascript")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        """The tab icon."""
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
    app.mount("/optuna", OptunaDashboard(settings), name="optuna-dashboard")
