"""The CUDA check: Lion's GPU tests, then its step against fused AdamW and other Lions, on the
GPU of this machine, in one command (``bash bench/gpu_check.sh`` runs it).

1. The CUDA tests: the Triton kernel against the reference step (and against its own run
   through Triton's interpreter), the fused step's CUDA tests, and DDP on two processes when
   there are two GPUs.
2. The optimizer step at 124M (GPT-2 small shapes) and 1B parameters (a 2048-wide, 18-layer
   decoder's shapes): our Lion (flat buffer, default, bf16 parameters with Kahan),
   ``torch.optim.AdamW(fused=True)``, lion-pytorch (its Triton step when Triton is there)
   and bitsandbytes' 32-bit Lion when installed. Each is timed alone (median of
   ``--repeats`` steps after warm-up) with its peak memory; bandwidth counts the bytes each
   step must move (20 per parameter for fp32 Lion, 28 for AdamW, 14 for bf16 Lion with
   Kahan) against the device's peak (its datasheet figure when known, and a measured copy).

Writes ``gpu_check.json`` and ``gpu_check.md`` (the table) to ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Datasheet HBM bandwidth (GB/s) by a substring of the device name, most specific first.
PEAK_GBPS = [
    ("H200", 4800.0),
    ("H100 NVL", 3900.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),  # SXM
    ("GH200", 4000.0),
    ("B200", 8000.0),
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),
    ("L40S", 864.0),
    ("A10G", 600.0),
    ("L4", 300.0),
]
BYTES_PER_PARAM = {"lion": 20, "lion-bf16-kahan": 14, "lion-bf16": 10, "adamw": 28}
TESTS = [
    "tests/test_lion_triton.py",
    "tests/test_lion_fused.py",
    "tests/test_lion.py",
]


def parse_args(argv=None) -> argparse.Namespace:
    """The command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_check_results", help="folder for the JSON and table")
    ap.add_argument("--sizes", default="124M,1B", help="comma list of: 124M, 1B")
    ap.add_argument("--repeats", type=int, default=30, help="timed steps per optimizer")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    ap.add_argument("--skip-tests", action="store_true", help="only the benchmark")
    ap.add_argument(
        "--device",
        default="cuda",
        help="cuda, or cpu for a dry run of the benchmark's code (size 'tiny', no tests)",
    )
    return ap.parse_args(argv)


def gpt_shapes(d: int, layers: int, vocab: int = 50304, ctx: int = 1024) -> list[tuple[int, ...]]:
    """A GPT-style decoder's parameter shapes (tied embeddings)."""
    shapes: list[tuple[int, ...]] = [(vocab, d), (ctx, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,)]
        shapes += [(d,), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,)]
    return shapes + [(d,), (d,)]


SIZES = {
    "124M": gpt_shapes(768, 12),
    "1B": gpt_shapes(2048, 18),
    "tiny": gpt_shapes(64, 2, vocab=512, ctx=64),  # a dry run of this script's code
}


def peak_gbps(name: str) -> float | None:
    """The device's datasheet memory bandwidth, when its name is in :data:`PEAK_GBPS`."""
    for key, value in PEAK_GBPS:
        if key in name:
            return value
    return None


def run_tests(out: Path) -> dict:
    """Run the CUDA tests (two-GPU DDP when there are two) and return their outcome."""
    import torch

    files = list(TESTS)
    if torch.cuda.device_count() >= 2:
        files.append("tests/test_lion_distributed.py")
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *files]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    (out / "tests.log").write_text(done.stdout + done.stderr)
    tail = (done.stdout.strip().splitlines() or [""])[-1]
    print(f"tests: {tail} ({time.perf_counter() - started:.0f} s; log in {out / 'tests.log'})")
    return {"returncode": done.returncode, "summary": tail, "files": files}


def optimizers(torch, device) -> dict[str, tuple[str, object, Callable]]:
    """name -> (bytes family, parameter dtype, factory(params) -> optimizer) for ``device``."""
    from optim import Lion

    hp = {"lr": 1e-4, "weight_decay": 0.1}
    found: dict[str, tuple[str, object, Callable]] = {
        "adamw fused (torch)": (
            "adamw",
            torch.float32,
            lambda ps: torch.optim.AdamW(ps, **hp, fused=True),
        ),
        "lion flat (ours)": ("lion", torch.float32, lambda ps: Lion(ps, **hp, flatten=True)),
        "lion default (ours)": ("lion", torch.float32, lambda ps: Lion(ps, **hp)),
        "lion bf16 + kahan (ours)": (
            "lion-bf16-kahan",
            torch.bfloat16,
            lambda ps: Lion(ps, **hp, kahan_sum=True, flatten=True),
        ),
        "lion bf16 (ours)": ("lion-bf16", torch.bfloat16, lambda ps: Lion(ps, **hp, flatten=True)),
    }
    try:
        from lion_pytorch import Lion as LionPytorch

        if device.type == "cuda":
            found["lion-pytorch (triton)"] = (
                "lion",
                torch.float32,
                lambda ps: LionPytorch(ps, **hp, use_triton=True),
            )
        found["lion-pytorch"] = ("lion", torch.float32, lambda ps: LionPytorch(ps, **hp))
    except ImportError:
        print("lion-pytorch is not installed: skipped", file=sys.stderr)
    try:
        import bitsandbytes as bnb

        found["bitsandbytes Lion32bit"] = (
            "lion",
            torch.float32,
            lambda ps: bnb.optim.Lion32bit(ps, **hp),
        )
    except Exception as exc:  # noqa: BLE001 - an optional competitor, any failure skips it
        print(f"bitsandbytes unavailable ({type(exc).__name__}): skipped", file=sys.stderr)
    return found


def which_kernel(opt) -> str:
    """Which steps served our Lion's last step ("" for other optimizers)."""
    return ",".join(getattr(opt, "steps_used", ()))


def time_one(torch, device, shapes, dtype, factory, repeats: int, warmup: int) -> dict:
    """Median and best step time and peak memory (CUDA) of one optimizer on fresh
    parameters."""
    cuda = device.type == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    gen = torch.Generator(device=device).manual_seed(0)
    params = [
        torch.nn.Parameter((torch.randn(s, generator=gen, device=device) * 0.02).to(dtype))
        for s in shapes
    ]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, device=device).to(dtype)
    opt = factory(params)
    times = []
    for i in range(warmup + repeats):
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        opt.step()
        if cuda:
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    result = {
        "ms": statistics.median(times) * 1e3,
        "best_ms": min(times) * 1e3,
        "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
        "kernel": which_kernel(opt),
    }
    del opt, params
    return result


def copy_gbps(torch, device) -> float:
    """Measured copy bandwidth (read + write) over 1 GiB buffers (64 MiB on a CPU)."""
    n = 2**28 if device.type == "cuda" else 2**24
    a = torch.empty(n, device=device)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        b.copy_(a)
    if device.type == "cuda":
        torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / 10
    del a, b
    return 2 * 4 * n / sec / 1e9


def bench(args, peak: float | None, measured: float) -> list[dict]:
    """Every optimizer at every size; one row each."""
    import torch

    device = torch.device(args.device)
    rows = []
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        shapes = SIZES[size]
        n = sum(int(torch.Size(s).numel()) for s in shapes)
        base = None
        for name, (family, dtype, factory) in optimizers(torch, device).items():
            try:
                got = time_one(torch, device, shapes, dtype, factory, args.repeats, args.warmup)
            except Exception as exc:  # noqa: BLE001 - reported in the table, the rest go on
                rows.append({"size": size, "optimizer": name, "error": f"{exc!r}"[:200]})
                continue
            gbps = BYTES_PER_PARAM[family] * n / (got["ms"] / 1e3) / 1e9
            if name.startswith("adamw fused"):
                base = got["ms"]
            rows.append(
                {
                    "size": size,
                    "params": n,
                    "optimizer": name,
                    **got,
                    "x_adamw_fused": got["ms"] / base if base else None,
                    "gbps": gbps,
                    "pct_peak": 100 * gbps / peak if peak else None,
                    "pct_copy": 100 * gbps / measured,
                }
            )
            print(f"  {size:5} {name:26} {got['ms']:8.2f} ms  {gbps:7.0f} GB/s", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| size | optimizer | kernel | ms/step | best ms | × AdamW fused | GB/s | % peak "
        "| % copy | peak GiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']} | {r['optimizer']} | failed: {r['error']} ||||||||")
            continue
        ratio = f"{r['x_adamw_fused']:.2f}" if r["x_adamw_fused"] else "-"
        pct = f"{r['pct_peak']:.0f}%" if r["pct_peak"] else "-"
        memory = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        lines.append(
            f"| {r['size']} | {r['optimizer']} | {r['kernel'] or '-'} | {r['ms']:.2f} "
            f"| {r['best_ms']:.2f} | {ratio} | {r['gbps']:.0f} | {pct} | {r['pct_copy']:.0f}% "
            f"| {memory} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the CUDA tests and the benchmark; 0 when the tests pass and a GPU was there."""
    args = parse_args(argv)
    import torch

    dry_run = args.device == "cpu"
    if not dry_run and not torch.cuda.is_available():
        print(
            "no CUDA device: nothing to check here (tests/test_lion_triton.py checks the "
            "kernel through Triton's interpreter on the CPU; --device cpu --sizes tiny "
            "dry-runs this script)"
        )
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if dry_run:
        name, gpus, cuda = "CPU (dry run: these numbers say nothing about a GPU)", 0, None
    else:
        name, gpus, cuda = (
            torch.cuda.get_device_name(),
            torch.cuda.device_count(),
            torch.version.cuda,
        )
    peak = None if dry_run else peak_gbps(name)
    print(
        f"device: {name}, {gpus} GPU(s); torch {torch.__version__}, CUDA {cuda}; "
        f"datasheet peak {peak or 'unknown'} GB/s"
    )
    started = time.perf_counter()
    tests = None if args.skip_tests or dry_run else run_tests(out)
    measured = copy_gbps(torch, torch.device(args.device))
    print(f"measured copy bandwidth: {measured:.0f} GB/s")
    rows = bench(args, peak, measured)
    report = {
        "device": name,
        "gpus": gpus,
        "torch": torch.__version__,
        "cuda": cuda,
        "peak_gbps": peak,
        "copy_gbps": measured,
        "tests": tests,
        "rows": rows,
        "seconds": time.perf_counter() - started,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("LIONSWEEP_", "TRITON_"))},
    }
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    md = table(rows)
    (out / "gpu_check.md").write_text(md + "\n")
    print("\n" + md)
    print(f"\n{time.perf_counter() - started:.0f} s; results in {out}/gpu_check.json and .md")
    failed = any("error" in r for r in rows)
    return 0 if not failed and (tests is None or tests["returncode"] == 0) else 1


if __name__ == "__main__":
    raise SystemExit(main())
