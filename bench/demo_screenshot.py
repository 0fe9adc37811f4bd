"""Take the README's dashboard picture from a running server (e.g. ``lionsweep up --demo``).

    python bench/demo_screenshot.py --server http://127.0.0.1:8000 --sweep 1 \
        --out docs/dashboard.png

Waits until the sweep is complete and every plot has drawn, then saves the top of its page
(1280 × 1450) through headless Chromium (``/usr/bin/chromium`` unless ``--chromium``).
Prints what the picture shows (trials, re-runs, the best config's seeds and the verdict), so
that its caption can be checked against it.
"""

from __future__ import annotations

import argparse
import time

import httpx
from playwright.sync_api import sync_playwright

PLOTS = ("plot-history", "plot-map", "plot-parallel", "plot-importances")


def wait_complete(server: str, sweep: int, timeout: float) -> dict:
    """The sweep's status once it is complete (raises after ``timeout`` seconds)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = httpx.get(f"{server}/api/sweeps/{sweep}", timeout=30).json()
        if got["status"] == "complete":
            return got
        time.sleep(1)
    raise SystemExit(f"sweep {sweep} did not complete within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--sweep", type=int, default=1)
    parser.add_argument("--out", default="docs/dashboard.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    sweep = wait_complete(args.server, args.sweep, args.timeout)
    best = httpx.get(f"{args.server}/api/sweeps/{args.sweep}/best", timeout=60).json()
    rule = httpx.get(f"{args.server}/api/sweeps/{args.sweep}/scaling-rule", timeout=60).json()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=args.chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1450})
        page.goto(f"{args.server}/sweeps/{args.sweep}")
        for plot in PLOTS:
            page.locator(f"#{plot} .main-svg").first.wait_for(timeout=30_000)
        page.locator("#rule-verdict[data-verdict]").wait_for(timeout=30_000)
        page.wait_for_timeout(1000)  # let the plots finish their transitions
        page.screenshot(path=args.out, full_page=False)
        browser.close()
    b = best["best"]
    print(
        f"{args.out}: sweep {args.sweep} {sweep['status']}, {sweep['finished']} finished, "
        f"counts {sweep['counts']}; best trial {b['trial_number']}: mean {b['mean']:.4g} over "
        f"{b['n_seeds']} seeds, 90% CI {b['ci']}, tied {best['tied']}; verdict {rule['verdict']}"
    )


if __name__ == "__main__":
    main()
