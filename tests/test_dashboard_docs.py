"""The API docs pages (/docs, /redoc) render in a real browser with no network beyond the
server: Swagger UI's and ReDoc's files are served by lionsweep itself, not a CDN."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest


@pytest.fixture(scope="module")
def docs_server(module_live_server: Any, make_sqlite_url: Any) -> Any:
    """A real server on its own SQLite database."""
    return module_live_server(make_sqlite_url())


def offline(page: Any, server_url: str) -> list[str]:
    """Abort every request that leaves the server (as on a node without internet); return
    the list the blocked URLs are collected in."""
    host = urlsplit(server_url).netloc
    blocked: list[str] = []

    def route(r: Any) -> None:
        if urlsplit(r.request.url).netloc == host:
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return blocked


def test_swagger_ui_renders_offline(docs_server: Any, page: Any) -> None:
    blocked = offline(page, docs_server.url)
    page.goto(f"{docs_server.url}/docs")
    title = page.locator(".swagger-ui .info .title")
    title.wait_for(timeout=20_000)
    assert title.inner_text().startswith("lionsweep")
    page.locator(".opblock-summary-path", has_text="/api/sweeps").first.wait_for(timeout=10_000)
    assert page.evaluate("typeof SwaggerUIBundle") == "function"
    assert blocked == []
    assert page.errors == []


def test_redoc_renders_offline(docs_server: Any, page: Any) -> None:
    blocked = offline(page, docs_server.url)
    page.goto(f"{docs_server.url}/redoc")
    page.locator("h1", has_text="lionsweep").first.wait_for(timeout=20_000)
    assert page.get_by_text("/api/sweeps").first.is_visible()
    # ReDoc's own "powered by" logo comes from this server too.
    assert blocked == []


def test_the_docs_pages_name_no_other_host(docs_server: Any) -> None:
    import httpx

    for path in ("/docs", "/redoc"):
        html = httpx.get(f"{docs_server.url}{path}", timeout=30).text
        assert "cdn." not in html and "fonts.googleapis" not in html, path
        assert "/api-docs-static/" in html
