"""optuna-dashboard served read-only under ``/optuna`` on the service's own database.

optuna-dashboard's single-page app assumes it lives at the site root (``/static/bundle.js``,
``/api/studies``, router prefix ``/dashboard``). This ASGI wrapper serves its index page and
bundle with those paths moved under ``/optuna``, refuses every method that could write (the
studies belong to lionsweep sweeps), asks for a read token when the service requires one, and
hands everything else to optuna-dashboard's WSGI app through a2wsgi.
"""

from __future__ import annotations

import threading
import time
from functools import cache
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from service.settings import Settings

PREFIX = "/optuna"
READ_METHODS = {"GET", "HEAD"}
TOKEN_COOKIE = "lionsweep_token"
TOKEN_CACHE_SECONDS = 30.0
CSP = ";".join(
    [
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "frame-src 'self'",
        "object-src 'none'",
        "connect-src 'self'",
        "style-src 'self' data: 'unsafe-inline'",
        "script-src 'self' 'unsafe-eval'",
    ]
)
#: optuna-dashboard's controls that write (create, rename, edit, delete, upload, fail a
#: trial), which the read-only mount would refuse with 405: hidden. They are found by the
#: ``aria-label`` optuna-dashboard gives them or by the ``data-testid`` that MUI puts on the
#: icon each one carries ("AddBoxIcon" for "Create"), which do not change between builds as
#: the generated class names do.
WRITE_LABELS = ("delete study", "rename study", "delete artifact", "skip trial")
WRITE_ICONS = ("AddBox", "Delete", "DriveFileRenameOutline", "Edit", "UploadFile", "StopCircle")
READ_ONLY_CSS = (
    ",\n".join(
        [f'[aria-label="{label}"]' for label in WRITE_LABELS]
        + [
            f':is(button, a, [role="button"], [role="menuitem"]):has(svg[data-testid="{icon}Icon"])'
            for icon in WRITE_ICONS
        ]
    )
    + " { display: none !important; }"
)
# (original, replacement, minimum number of occurrences expected in the bundle)
BUNDLE_PATCHES = [
    ("${this.baseURL}/api", "${this.baseURL}" + PREFIX + "/api", 1),
    ('url_prefix:"/dashboard"', f'url_prefix:"{PREFIX}/dashboard"', 1),
    ("`/csv/", f"`{PREFIX}/csv/", 0),
    ("`/artifacts/", f"`{PREFIX}/artifacts/", 0),
]


def _package_dir() -> Path:
    import optuna_dashboard

    return Path(optuna_dashboard.__file__).resolve().parent


@cache
def patched_index() -> str:
    """optuna-dashboard's index.html with its bundle loaded from under the prefix, and a
    stylesheet that hides the controls that would write (the mount refuses them)."""
    text = (_package_dir() / "index.html").read_text(encoding="utf-8")
    if "</head>" not in text:
        raise RuntimeError("optuna-dashboard index changed: no </head> to add the stylesheet to")
    style = f'<style id="lionsweep-read-only">\n{READ_ONLY_CSS}\n</style>\n</head>'
    text = text.replace("</head>", style, 1)
    return text.replace('src="/static/', f'src="{PREFIX}/static/')


@cache
def patched_bundle() -> str:
    """optuna-dashboard's JavaScript bundle with its URLs moved under the prefix."""
    text = (_package_dir() / "public" / "bundle.js").read_text(encoding="utf-8")
    for old, new, at_least in BUNDLE_PATCHES:
        if text.count(old) < at_least:
            raise RuntimeError(f"optuna-dashboard bundle changed: {old!r} not found")
        text = text.replace(old, new)
    return text


def request_token(scope: Scope) -> str | None:
    """The bearer token of a request: ``Authorization`` header, else the dashboard cookie."""
    headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope["headers"]}
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    cookie = SimpleCookie(headers.get("cookie", ""))
    morsel = cookie.get(TOKEN_COOKIE)
    return morsel.value if morsel and morsel.value else None


def with_accept_encoding(scope: Scope) -> Scope:
    """``scope`` with ``Accept-Encoding: identity`` when the request sent none.

    optuna-dashboard reads ``request.headers["Accept-Encoding"]`` when it serves static
    files, which raises (a 500) for a client that sends no such header.
    """
    if any(k.lower() == b"accept-encoding" for k, _ in scope["headers"]):
        return scope
    return {**scope, "headers": [*scope["headers"], (b"accept-encoding", b"identity")]}


class OptunaDashboard:
    """ASGI app: read-only optuna-dashboard for ``settings.database_url``, built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._wsgi: Any = None
        self._lock = threading.Lock()
        self._valid: dict[str, float] = {}

    def wsgi_app(self) -> Any:
        """The optuna-dashboard WSGI app wrapped for ASGI (created lazily: after migrations)."""
        with self._lock:
            if self._wsgi is None:
                import optuna_dashboard
                from a2wsgi import WSGIMiddleware

                self._wsgi = WSGIMiddleware(optuna_dashboard.wsgi(self.settings.database_url))
            return self._wsgi

    async def allowed(self, scope: Scope) -> bool:
        """Whether this request may read (always, unless the service requires a read token).

        The token is checked by asking the service's own ``GET /api/sweeps`` with it, so the
        one authorization rule of the API also guards these pages.
        """
        if not self.settings.require_read_token:
            return True
        token = request_token(scope)
        if token is None:
            return False
        now = time.monotonic()
        if self._valid.get(token, 0.0) > now:
            return True
        import httpx

        transport = httpx.ASGITransport(app=scope["app"])
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            answer = await client.get(
                "/api/sweeps", params={"limit": 1}, headers={"Authorization": f"Bearer {token}"}
            )
        if answer.status_code == 200:
            self._valid[token] = now + TOKEN_CACHE_SECONDS
            return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one request: refuse writes, serve the patched shell, else optuna-dashboard."""
        if scope["type"] != "http":
            return
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        response: Response | None = None
        if scope["method"] not in READ_METHODS:
            response = JSONResponse(
                {"detail": "the /optuna views are read-only; change sweeps through /api"}, 405
            )
        elif not await self.allowed(scope):
            response = PlainTextResponse(
                "A read token is required: open the lionsweep dashboard with #token=<token> first.",
                401,
            )
        elif path in ("", "/"):
            response = RedirectResponse(f"{PREFIX}/dashboard", 302)
        elif path == "/dashboard" or path.startswith("/dashboard/"):
            response = Response(
                patched_index(),
                media_type="text/html",
                headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
            )
        elif path == "/static/bundle.js":
            response = Response(patched_bundle(), media_type="text/javascript")
        if response is None:
            try:
                wsgi = self.wsgi_app()
            except ImportError as exc:  # a2wsgi is a declared dependency; say so if it is absent
                response = PlainTextResponse(f"optuna-dashboard is unavailable: {exc}", 503)
        if response is not None:
            await response(scope, receive, send)
            return
        await wsgi(with_accept_encoding(scope), receive, send)
