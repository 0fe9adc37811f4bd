"""The API's own documentation: the OpenAPI schema, Swagger UI and ReDoc, with their files.

Swagger UI's and ReDoc's files are served from this server (as the dashboard's plotly is): a
GPU node often has no internet, and the pages would be blank without them.
"""

from __future__ import annotations

import importlib.resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from service.auth import ReadScope

#: Swagger UI's and ReDoc's files (JS, CSS, icon), as the fastapi-offline package ships them.
API_DOCS_STATIC = str(importlib.resources.files("fastapi_offline") / "static")


def mount_api_docs(app: FastAPI) -> None:
    """Serve ``app``'s OpenAPI schema, Swagger UI and ReDoc (each guarded like every read)."""

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_: ReadScope) -> JSONResponse:
        """The OpenAPI schema (guarded like every read)."""
        return JSONResponse(app.openapi())

    app.mount("/api-docs-static", StaticFiles(directory=API_DOCS_STATIC), name="api-docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs(_: ReadScope) -> HTMLResponse:
        """Swagger UI."""
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="lionsweep API",
            swagger_js_url="/api-docs-static/swagger-ui-bundle.js",
            swagger_css_url="/api-docs-static/swagger-ui.css",
            swagger_favicon_url="/api-docs-static/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(_: ReadScope) -> HTMLResponse:
        """ReDoc."""
        from service.dashboard import REDOC_JS_URL

        return get_redoc_html(
            openapi_url="/openapi.json",
            title="lionsweep API",
            redoc_js_url=REDOC_JS_URL,
            redoc_favicon_url="/api-docs-static/favicon.png",
            with_google_fonts=False,
        )
