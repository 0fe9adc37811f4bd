"""Reads of a large sweep through real servers on SQLite: an answer computed from every trial is
computed once per change of the trials and shared by readers asking at the same time (its
``Server-Timing`` says computed, shared or kept), a change made by another server process is
seen at once, and light reads never queue behind heavy ones."""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Any

import httpx
import pytest

SPACE = {
    "lr": {"low": 1e-5, "high": 1e-2, "log": True},
    "weight_decay": {"low": 1e-3, "high": 10.0, "log": True},
    "beta1": 0.9,
    "beta2": 0.99,
}


def rows(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` complete runs on a noisy bowl in (ln lr, ln weight decay)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lr, wd = 10 ** rng.uniform(-5, -2), 10 ** rng.uniform(-3, 1)
        v = 3 + 0.1 * math.log(lr / 1e-3) ** 2 + 0.05 * math.log(wd / 0.1) ** 2
        out.append({"lr": lr, "weight_decay": wd, "value": v + rng.gauss(0, 0.01)})
    return out


def big_sweep(c: httpx.Client, n: int) -> int:
    """A sweep with ``n`` imported complete trials."""
    spec = {
        "name": "big",
        "task": {"name": "big"},
        "n_trials": 1,
        "sampler": {"name": "random", "seed": 0},
        "reevaluate": "off",
        "space": SPACE,
    }
    r = c.post("/api/sweeps", json=spec)
    assert r.status_code == 201, r.text
    sweep = r.json()["id"]
    for start in range(0, n, 1000):
        body = {"format": "rows", "rows": rows(min(1000, n - start), start)}
        r = c.post(f"/api/sweeps/{sweep}/trials:import", json=body)
        assert r.status_code == 200, r.text
    return sweep


def how(r: httpx.Response) -> str:
    """How the response's answer was obtained: computed, shared or kept."""
    timing = r.headers.get("server-timing", "")
    return timing.split("desc=")[1].split(";")[0] if "desc=" in timing else "unsaid"


def at_once(url: str, paths: list[str]) -> list[httpx.Response]:
    """GET every path at the same moment, each on its own connection."""
    out: list[httpx.Response | None] = [None] * len(paths)
    go = threading.Barrier(len(paths))

    def get(i: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            go.wait()
            out[i] = c.get(paths[i])

    threads = [threading.Thread(target=get, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out  # type: ignore[return-value]


@pytest.mark.slow
def test_concurrent_cold_reads_compute_once_and_a_change_anywhere_recomputes(
    live_server: Any, make_sqlite_url: Any
) -> None:
    url = make_sqlite_url()
    one, other = live_server(url), live_server(url)
    with httpx.Client(base_url=one.url, timeout=120) as c:
        sweep = big_sweep(c, 600)
    rule = f"/api/sweeps/{sweep}/scaling-rule"
    answers = at_once(one.url, [rule] * 4)
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert sorted(how(r) for r in answers).count("computed") == 1, [
        r.headers.get("server-timing") for r in answers
    ]
    assert len({r.text for r in answers}) == 1
    assert how(httpx.get(one.url + rule, timeout=60)) == "kept"
    best = [httpx.get(f"{one.url}/api/sweeps/{sweep}/best", timeout=60) for _ in range(2)]
    assert [how(r) for r in best] == ["computed", "kept"]

    # Trials added through the other server process change the answer here at once.
    with httpx.Client(base_url=other.url, timeout=120) as c:
        r = c.post(f"/api/sweeps/{sweep}/trials:import", json={"rows": rows(5, 99)})
        assert r.status_code == 200, r.text
    again = httpx.get(one.url + rule, timeout=60)
    assert how(again) == "computed"
    assert again.json()["n"] == answers[0].json()["n"] + 5
    assert how(httpx.get(f"{one.url}/api/sweeps/{sweep}/best", timeout=60)) == "computed"


@pytest.mark.slow
def test_a_light_read_does_not_wait_for_heavy_ones(live_server: Any, make_sqlite_url: Any) -> None:
    server = live_server(make_sqlite_url())
    with httpx.Client(base_url=server.url, timeout=120) as c:
        sweep = big_sweep(c, 2000)
        assert c.get("/api/sweeps").status_code == 200  # the list itself is kept
    heavy = [f"/api/sweeps/{sweep}/scaling-rule?width={w}&from_width=1" for w in range(1, 7)]
    heavy += [f"/api/sweeps/{sweep}/importances", f"/api/sweeps/{sweep}/best"]
    started = threading.Event()
    took: list[float] = []

    def light() -> None:
        started.wait()
        time.sleep(0.3)  # the heavy reads are under way
        t0 = time.perf_counter()
        r = httpx.get(server.url + "/api/sweeps", timeout=120)
        took.append(time.perf_counter() - t0)
        assert r.status_code == 200

    t = threading.Thread(target=light)
    t.start()
    started.set()
    out = at_once(server.url, heavy)
    t.join()
    assert all(r.status_code == 200 for r in out), [r.text[:200] for r in out]
    assert took and took[0] < 1.0, took


def test_batched_bootstrap_refits_equal_one_at_a_time_refits() -> None:
    import numpy as np

    from service import surface as sf

    rng = np.random.default_rng(1)
    n = sf.GRAM_ROWS
    x, y = rng.uniform(-3, 3, n), rng.uniform(-3, 3, n)
    _, d = sf._Scale(x, y).design(x, y, False, None)
    v = 0.3 * x * x + 0.2 * y * y + 0.1 * x * y + rng.normal(0, 0.1, n)
    picks = [rng.integers(0, n, n) for _ in range(sf.BATCH + 3)]
    one = np.array([sf._fit(d[i], v[i], 6)[0] for i in picks])
    many = np.array(sf._resampled_fits(d, v, 6, picks))
    assert np.allclose(one, many, rtol=1e-8, atol=1e-10)
