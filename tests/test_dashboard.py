"""The dashboard: pages, bundled plotly.js, read-only optuna-dashboard, and a real browser.

The first tests mount the dashboard on a bare FastAPI app (its own contract:
``mount_dashboard(app, settings)``). The browser tests drive Debian's Chromium through
Playwright against a real ``lionsweep serve`` with real worker processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.dashboard import mount_dashboard, plotly_js_path, plotly_version
from service.dashboard.optuna_mount import patched_bundle
from service.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def optuna_db(tmp_path: Path) -> str:
    """An SQLite Optuna storage holding one finished study."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=url, study_name="quad")
    study.optimize(lambda t: (t.suggest_float("x", -2, 2) - 0.5) ** 2, n_trials=5)
    return url


@pytest.fixture
def client(optuna_db: str) -> TestClient:
    """A bare app with only the dashboard mounted."""
    app = FastAPI()
    mount_dashboard(app, Settings(database_url=optuna_db))
    return TestClient(app)


def test_pages_are_html_shells_loading_local_scripts(client: TestClient) -> None:
    index = client.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert 'src="/static/list.js"' in index.text
    page = client.get("/sweeps/7")
    assert page.status_code == 200
    assert f'src="/static/vendor/plotly-{plotly_version()}.min.js"' in page.text
    assert 'src="/static/sweep.js"' in page.text
    assert "cdn" not in (index.text + page.text).lower()
    for asset in ("api.js", "list.js", "sweep.js", "plots.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200, asset
    assert client.get("/sweeps/not-a-number").status_code == 422


def test_plotly_js_comes_from_the_plotly_package_with_a_long_cache(client: TestClient) -> None:
    answer = client.get(f"/static/vendor/plotly-{plotly_version()}.min.js")
    assert answer.status_code == 200
    assert answer.content == plotly_js_path().read_bytes()
    assert "max-age=31536000" in answer.headers["cache-control"]
    assert "javascript" in answer.headers["content-type"]
    assert client.get("/static/vendor/plotly-0.0.1.min.js").status_code == 404


def test_optuna_dashboard_is_mounted_read_only_under_optuna(client: TestClient) -> None:
    root = client.get("/optuna", follow_redirects=False)
    assert root.status_code in (302, 307)
    shell = client.get("/optuna/dashboard")
    assert shell.status_code == 200
    assert 'src="/optuna/static/bundle.js"' in shell.text
    bundle = client.get("/optuna/static/bundle.js")
    assert bundle.status_code == 200
    assert "${this.baseURL}/optuna/api" in bundle.text
    assert 'url_prefix:"/optuna/dashboard"' in bundle.text
    assert bundle.text == patched_bundle()
    studies = client.get("/optuna/api/studies").json()["study_summaries"]
    assert [s["study_name"] for s in studies] == ["quad"]
    deleted = client.delete(f"/optuna/api/studies/{studies[0]['study_id']}")
    assert deleted.status_code == 405
    assert client.post("/optuna/api/studies", json={"study_name": "x"}).status_code == 405
    assert len(client.get("/optuna/api/studies").json()["study_summaries"]) == 1


def test_read_token_setting_marks_pages_and_guards_optuna(optuna_db: str) -> None:
    app = FastAPI()
    mount_dashboard(app, Settings(database_url=optuna_db, require_read_token=True))
    client = TestClient(app)
    assert 'content="required"' in client.get("/").text
    # This bare app has no /api to vouch for any token: every token is refused.
    assert client.get("/optuna/api/studies").status_code == 401
    assert (
        client.get("/optuna/api/studies", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
