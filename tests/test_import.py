"""Runs made elsewhere imported into a sweep (``POST /api/sweeps/{id}/trials:import`` and
``lionsweep import``), through a real server on SQLite and PostgreSQL: CSV, JSON lines and a
W&B runs export become marked trials that /best, /scaling-rule and the counts use, leave the
sweep's own n_trials to run, and every bad row is a 422 naming its row and column that writes
nothing."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from lionsweep.cli import IMPORT_MAX_BYTES, app

runner = CliRunner()
LR_OPT, WD_OPT = 1e-3, 0.1
SPACE = {
    "lr": {"low": 1e-5, "high": 1e-2, "log": True},
    "weight_decay": {"low": 1e-3, "high": 10.0, "log": True},
    "beta1": 0.9,
    "beta2": {"choices": [0.98, 0.99]},
}


def planted(lr: float, wd: float) -> float:
    """A bowl in ln lr, ln wd with its floor 3.0 at (LR_OPT, WD_OPT)."""
    return 3.0 + 0.1 * math.log(lr / LR_OPT) ** 2 + 0.05 * math.log(wd / WD_OPT) ** 2


def new_sweep(client: httpx.Client, n_trials: int = 3, **space) -> dict:
    spec = {
        "name": "imported",
        "task": {"name": f"t{uuid.uuid4().hex[:10]}"},
        "n_trials": n_trials,
        "sampler": {"name": "random", "seed": 1},
        "space": {**SPACE, **space},
        "reevaluate": "off",
    }
    r = client.post("/api/sweeps", json=spec)
    assert r.status_code == 201, r.text
    return r.json()


def grid_csv() -> str:
    """25 complete runs on a 5 × 5 grid (the optimum's twice), two diverged, one failed."""
    lines = ["lr,weight_decay,beta1,beta2,seed,value,state"]
    for lr in (1e-4, 3e-4, 1e-3, 3e-3, 6e-3):
        for wd in (0.01, 0.03, 0.1, 0.3, 1.0):
            lines.append(f"{lr},{wd},0.9,0.99,0,{planted(lr, wd):.6f},complete")
    lines.append(f"{LR_OPT},{WD_OPT},0.9,0.99,1,{planted(LR_OPT, WD_OPT) + 0.002:.6f},complete")
    lines.append("0.01,0.1,0.9,0.99,0,7.8,diverged")
    lines.append("0.01,1.0,0.9,0.99,0,nan,diverged")
    lines.append("0.01,0.01,0.9,0.98,0,,failed")
    return "\n".join(lines) + "\n"


def trials(client: httpx.Client, sweep_id: int) -> list[dict]:
    r = client.get(f"/api/sweeps/{sweep_id}/trials", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def do_import(client: httpx.Client, sweep_id: int, **body) -> httpx.Response:
    return client.post(f"/api/sweeps/{sweep_id}/trials:import", json=body)


def test_csv_rows_become_marked_trials_that_best_rule_and_counts_use(client) -> None:
    sweep = new_sweep(client)
    r = do_import(client, sweep["id"], format="csv", text=grid_csv(), source="grid.csv")
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["imported"], out["complete"], out["diverged"], out["failed"]) == (29, 26, 2, 1)
    assert out["trial_numbers"] == list(range(29))

    items = trials(client, sweep["id"])
    assert len(items) == 29 and all(t["imported"] for t in items)
    assert items[0]["import_source"] == "grid.csv row 2"
    assert items[0]["duration_seconds"] is None
    assert items[0]["config"]["seed"] == 0
    by_row = {t["import_source"]: t for t in items}
    cliff = by_row["grid.csv row 28"]  # diverged with a value: a complete trial, marked
    assert (cliff["state"], cliff["value"], cliff["reason"], cliff["diverged"]) == (
        "complete",
        7.8,
        "diverged",
        True,
    )
    nan_row = by_row["grid.csv row 29"]  # diverged without a finite value: pruned, as a worker
    assert (nan_row["state"], nan_row["value"], nan_row["reason"]) == ("pruned", None, "diverged")
    failed = by_row["grid.csv row 30"]
    assert (failed["state"], failed["value"], failed["diverged"]) == ("failed", None, False)

    best = client.get(f"/api/sweeps/{sweep['id']}/best").json()["best"]
    assert best["optimizer_kwargs"]["lr"] == pytest.approx(LR_OPT)
    assert best["optimizer_kwargs"]["weight_decay"] == pytest.approx(WD_OPT)
    # The optimum's two seeds are one config: ranked on the first, valued on the second.
    assert (best["n_seeds"], len(best["ranked_on"]), best["held_out"]) == (1, 1, True)

    rule = client.get(f"/api/sweeps/{sweep['id']}/scaling-rule")
    assert rule.status_code == 200, rule.text
    assert rule.json()["n"] >= 20  # the imported runs are what it fits

    got = client.get(f"/api/sweeps/{sweep['id']}").json()
    # 26 complete rows and a diverged one with its value are complete trials
    assert got["counts"]["complete"] == 27 and got["counts"]["imported"] == 29
    assert got["finished"] == 0  # imported runs do not use up the sweep's own n_trials
    # ... so the sweep still hands out its 3 own trials, then completes
    for _ in range(3):
        a = client.post(
            "/api/trials/claim", json={"worker_id": "w", "tasks": [sweep["task"]["name"]]}
        )
        assert a.status_code == 200, a.text
        done = client.post(
            f"/api/trials/{a.json()['trial_id']}/finish", json={"state": "complete", "value": 4.0}
        )
        assert done.status_code == 200, done.text
    got = client.get(f"/api/sweeps/{sweep['id']}").json()
    assert (got["status"], got["finished"], got["counts"]["complete"]) == ("complete", 3, 30)


def test_a_byte_order_mark_is_skipped_and_a_repeated_jsonl_key_is_refused(client) -> None:
    sweep = new_sweep(client)
    csv_text = "\ufefflr,weight_decay,beta2,value\n1e-3,0.1,0.99,3.0\n"
    r = do_import(client, sweep["id"], format="csv", text=csv_text)
    assert r.status_code == 200 and r.json()["imported"] == 1, r.text
    line = '{"lr": 1e-3, "lr": 2e-3, "weight_decay": 0.1, "beta2": 0.99, "value": 3.0}'
    r = do_import(client, sweep["id"], format="jsonl", text=line)
    assert r.status_code == 422 and "duplicate key 'lr'" in r.text, r.text
    r = do_import(
        client, sweep["id"], format="jsonl", text="\ufeff" + line.replace('"lr": 1e-3, ', "")
    )
    assert r.status_code == 200 and r.json()["imported"] == 1, r.text
    assert [t["params"]["lr"] for t in trials(client, sweep["id"])] == [1e-3, 2e-3]


def test_jsonl_with_nested_keys_and_a_mapping(client) -> None:
    sweep = new_sweep(client)
    rows = [
        {"config": {"lr": 1e-3, "weight_decay": 0.1, "betas": [0.9, 0.99]}, "loss": 3.0},
        {"config": {"lr": 2e-3, "weight_decay": 0.1, "betas": [0.9, 0.98]}, "loss": 3.1},
        {
            "config": {"lr": 8e-3, "weight_decay": 0.1, "betas": [0.9, 0.98]},
            "loss": float("inf"),
            "status": "diverged",
        },
    ]
    text = "\n".join(json.dumps(r) for r in rows) + "\n\n"  # Python writes Infinity; blank line
    r = do_import(
        client,
        sweep["id"],
        format="jsonl",
        text=text,
        mapping={
            "config.lr": "lr",
            "config.weight_decay": "weight_decay",
            "config.betas": "betas",
            "loss": "value",
            "status": "state",
        },
    )
    assert r.status_code == 200, r.text
    assert (r.json()["complete"], r.json()["diverged"]) == (2, 1)
    items = trials(client, sweep["id"])
    assert items[1]["params"]["beta2"] == 0.98 and items[1]["value"] == 3.1
    assert items[2]["state"] == "pruned" and items[2]["diverged"]


def test_json_rows_with_an_idempotency_key_import_once(client) -> None:
    sweep = new_sweep(client)
    body = {"rows": [{"lr": 1e-3, "weight_decay": 0.1, "beta2": 0.99, "value": 3.0}]}
    headers = {"Idempotency-Key": "k1"}
    url = f"/api/sweeps/{sweep['id']}/trials:import"
    first = client.post(url, json=body, headers=headers)
    again = client.post(url, json=body, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert first.json()["trial_numbers"] == again.json()["trial_numbers"] == [0]
    assert len(trials(client, sweep["id"])) == 1
    other = {"rows": [{"lr": 2e-3, "weight_decay": 0.1, "beta2": 0.99, "value": 3.5}]}
    r = client.post(url, json=other, headers=headers)  # the same key, the same count, new rows
    assert r.status_code == 409 and "another import" in r.text, r.text
    assert len(trials(client, sweep["id"])) == 1
    r = client.post(url, json=other, headers={"Idempotency-Key": "k2"})
    assert r.status_code == 200 and r.json()["trial_numbers"] == [1], r.text


WANDB = (
    "Name,State,Notes,User,Tags,Created,Runtime,Sweep,lr,weight_decay,beta2,val_loss,_step\n"
    "run-a,finished,-,me,,2024-01-01T00:00:00,120,,0.001,0.1,0.99,3.0,100\n"
    "run-b,finished,-,me,,2024-01-01T00:00:00,120,,0.002,0.1,0.99,3.2,100\n"
    "run-c,crashed,-,me,,2024-01-01T00:00:00,40,,0.009,0.1,0.99,7.9,20\n"
    "run-d,killed,-,me,,2024-01-01T00:00:00,10,,0.001,0.3,0.99,,5\n"
    "run-e,running,-,me,,2024-01-01T00:00:00,10,,0.001,1.0,0.99,3.5,50\n"
)


def test_wandb_export_with_a_mapping_and_state_meanings(client) -> None:
    sweep = new_sweep(client)
    r = do_import(
        client,
        sweep["id"],
        format="wandb",
        text=WANDB,
        mapping={"val_loss": "value"},
        states={"crashed": "diverged", "running": "skip"},
        source="wandb.csv",
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["complete"], out["diverged"], out["failed"], out["skipped"]) == (2, 1, 1, 1)
    assert "_step" in out["ignored_columns"] and "Runtime" in out["ignored_columns"]
    items = trials(client, sweep["id"])
    assert items[0]["import_source"] == "wandb.csv row 2 (run-a)"
    assert items[2]["diverged"] and items[2]["value"] == 7.9
    assert items[3]["state"] == "failed" and items[3]["reason"] == "imported: killed"


def test_a_wandb_export_needs_the_value_mapped_and_running_runs_said(client) -> None:
    sweep = new_sweep(client)
    r = do_import(client, sweep["id"], format="wandb", text=WANDB)
    assert r.status_code == 422
    assert any(e["loc"][:2] == ["body", "mapping"] for e in r.json()["detail"])
    r = do_import(client, sweep["id"], format="wandb", text=WANDB, mapping={"val_loss": "value"})
    assert r.status_code == 422
    crashed, running = r.json()["detail"]  # a crashed run is failed unless said otherwise
    assert (crashed["row"], crashed["column"]) == (4, "val_loss")
    assert "failed row has no value" in crashed["msg"]
    assert (running["row"], running["column"]) == (6, "State") and "running" in running["msg"]
    assert trials(client, sweep["id"]) == []


HEADER = "lr,weight_decay,beta1,beta2,seed,value,state\n"
GOOD = "0.001,0.1,0.9,0.99,0,3.0,complete\n"


@pytest.mark.parametrize(
    ("bad", "column", "rule"),
    [
        ("abc,0.1,0.9,0.99,0,3.0,complete", "lr", "must be a number"),
        ("0.001,0.1,0.9,0.99,0,nan,complete", "value", "finite value"),
        ("0.001,0.1,0.9,0.99,0,,complete", "value", "finite value"),
        ("0.001,0.1,0.9,0.99,0,3.0,failed", "value", "failed row has no value"),
        ("0.05,0.1,0.9,0.99,0,3.0,complete", "lr", "outside this sweep's range"),
        ("0.001,0.1,0.95,0.99,0,3.0,complete", "beta1", "fixes beta1 at 0.9"),
        ("0.001,0.1,0.9,0.97,0,3.0,complete", "beta2", "not one of this sweep's choices"),
        ("0.001,,0.9,0.99,0,3.0,complete", "weight_decay", "every row needs it"),
        ("0.001,0.1,0.9,0.99,1.5,3.0,complete", "seed", "must be an integer"),
        ("0.001,0.1,0.9,0.99,0,3.0,finished", "state", "not one of complete"),
    ],
)
def test_each_bad_row_is_named_by_row_and_column_and_nothing_is_written(
    client, bad: str, column: str, rule: str
) -> None:
    sweep = new_sweep(client)
    text = HEADER + GOOD + GOOD + bad + "\n" + GOOD
    r = do_import(client, sweep["id"], format="csv", text=text)
    assert r.status_code == 422, r.text
    [err] = r.json()["detail"]
    assert (err["row"], err["column"]) == (4, column), err
    assert rule in err["msg"]
    assert err["loc"] == ["body", "text", 4, column]
    assert trials(client, sweep["id"]) == []
    assert client.get(f"/api/sweeps/{sweep['id']}").json()["counts"]["complete"] == 0


def test_unknown_columns_wrong_json_types_and_too_many_rows(client) -> None:
    sweep = new_sweep(client)
    r = do_import(client, sweep["id"], format="csv", text="lr,weight_decay,beta2,loss\n1,1,1,1\n")
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert (err["row"], err["column"]) == (1, "loss") and "unknown column" in err["msg"]
    # ... unless mapped or left out
    text = "lr,weight_decay,beta2,loss,note\n0.001,0.1,0.99,3.0,x\n"
    r = do_import(
        client, sweep["id"], format="csv", text=text, mapping={"loss": "value"}, ignore=["note"]
    )
    assert r.status_code == 200, r.text

    rows = [
        {"lr": 1e-3, "weight_decay": 0.1, "beta2": 0.99, "value": 3.0},
        {"lr": "0.001", "weight_decay": 0.1, "beta2": 0.99, "value": 3.0},
    ]
    r = do_import(client, sweep["id"], rows=rows)
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert (err["row"], err["column"], err["loc"]) == (2, "lr", ["body", "rows", 2, "lr"])
    assert "must be a number" in err["msg"]

    many = [{"lr": 1e-3, "weight_decay": 0.1, "beta2": 0.99, "value": 3.0}] * 1001
    r = do_import(client, sweep["id"], rows=many)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "rows"]
    assert len(trials(client, sweep["id"])) == 1


def test_many_bad_rows_are_each_named_up_to_a_cap(client) -> None:
    sweep = new_sweep(client)
    text = HEADER + "".join("0.5,0.1,0.9,0.99,0,3.0,complete\n" for _ in range(80))
    r = do_import(client, sweep["id"], format="csv", text=text)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert [e["row"] for e in detail[:50]] == list(range(2, 52))
    assert detail[-1]["msg"] == "… and 30 more errors"


def test_an_unknown_sweep_is_404(client) -> None:
    rows = [{"lr": 1e-3, "weight_decay": 0.1, "beta2": 0.99, "value": 3.0}]
    r = do_import(client, 2**31 - 2, rows=rows)
    assert r.status_code == 404, r.text


# ---- the CLI ---------------------------------------------------------------------------------


def cli(server, *args: str):
    return runner.invoke(app, ["import", *args, "--server", server.url])


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output and len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    return lines[0]


def test_cli_imports_a_file_and_says_what_it_added(client, server, tmp_path: Path) -> None:
    sweep = new_sweep(client)
    path = tmp_path / "runs.csv"
    path.write_text(grid_csv())
    result = cli(server, str(path), "--sweep", str(sweep["id"]))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"imported 29 trials (26 complete, 2 diverged, 1 failed) into sweep {sweep['id']}"
    )
    wandb = tmp_path / "export.csv"
    wandb.write_text(WANDB)
    result = cli(
        server,
        str(wandb),
        "--sweep",
        str(sweep["id"]),
        "--format",
        "wandb",
        "--map",
        "val_loss=value",
        "--state",
        "crashed=diverged",
        "--state",
        "running=skip",
    )
    assert result.exit_code == 0, result.output
    assert "imported 4 trials (2 complete, 1 diverged, 1 failed)" in result.output
    assert len(trials(client, sweep["id"])) == 33


def test_cli_errors_are_one_line_each_exit_1_and_write_nothing(
    client, server, tmp_path: Path
) -> None:
    sweep = new_sweep(client)
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + GOOD + "0.001,0.1,0.9,0.99,0,nan,complete\n")
    result = cli(server, str(path), "--sweep", str(sweep["id"]))
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert line.startswith("error: row 3, column value: a complete row needs a finite value")

    result = cli(server, str(path), "--sweep", "2147483646")
    assert result.exit_code == 1
    assert "not found" in one_error_line(result.output)

    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.truncate(IMPORT_MAX_BYTES + 1)
    result = cli(server, str(big), "--sweep", str(sweep["id"]))
    assert result.exit_code == 1
    assert "at most" in one_error_line(result.output)

    over_body_cap = tmp_path / "over.csv"  # under the CLI's cap, over the server's 1 MiB
    over_body_cap.write_text(HEADER + GOOD * (1100 * 1024 // len(GOOD)))
    result = cli(server, str(over_body_cap), "--sweep", str(sweep["id"]))
    assert result.exit_code == 1
    assert "LIONSWEEP_MAX_BODY_BYTES" in one_error_line(result.output)
    assert trials(client, sweep["id"]) == []


def test_a_loss_near_zero_gets_no_interval_below_zero(client) -> None:
    """Seed noise wider than the best loss itself: the 90% interval stops at 0 (a loss is never
    negative), as the fitted surface's do."""
    sweep = new_sweep(client)
    lines = ["lr,weight_decay,beta1,beta2,seed,value,state"]
    runs = {(1e-3, 0.1): [0.001, 0.09, 0.004], (3e-4, 0.3): [0.2, 0.31, 0.12]}
    runs[(1e-4, 1.0)] = [0.5, 0.41, 0.62]
    for (lr, wd), values in runs.items():
        lines += [f"{lr},{wd},0.9,0.99,{s},{v},complete" for s, v in enumerate(values)]
    r = do_import(client, sweep["id"], format="csv", text="\n".join(lines) + "\n")
    assert r.status_code == 200, r.text
    best = client.get(f"/api/sweeps/{sweep['id']}/best").json()
    lo, hi = best["best"]["ci"]
    assert best["best"]["optimizer_kwargs"]["lr"] == pytest.approx(1e-3)
    assert lo == 0.0 < best["best"]["mean"] < hi
    assert all(c["ci"][0] >= 0.0 for c in best["top"])
