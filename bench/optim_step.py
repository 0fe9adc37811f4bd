"""Optimizer step benchmark: our Lion (fused / foreach / reference) against torch AdamW and
lion-pytorch, side by side, with a triad bandwidth measured in the same run.

    python bench/optim_step.py                      # all sets, CUDA when present else CPU
    python bench/optim_step.py --sets gpt --repeats 20 --device cpu

Effective GB/s counts 20 bytes per fp32 parameter for Lion (read p, g, m; write p, m)
and 28 for AdamW (read p, g, m, v; write p, m, v); "triad" is a = b + s·c over large
fp32 buffers (12 bytes per element), the machine's practical streaming bandwidth.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# fp32 p, g, m read + p, m written; with bf16 momentum m is 2 bytes each way; bf16 params
# with Kahan: p, g, m, comp read and p, m, comp written, 2 bytes each
BYTES_PER_PARAM = {"lion": 20, "lion-bf16m": 16, "lion-bf16-kahan": 14, "adamw": 28}


def parse_args(argv=None):
    """The command-line options of this benchmark."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sets", default="gpt,big,small", help="comma list of: gpt, big, small")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--repeats", type=int, default=15, help="timed steps per optimizer")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every set's size by this")
    ap.add_argument("--triad-mib", type=int, default=256, help="size of each triad buffer (MiB)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--only", default=None, help="comma list of optimizer names to run")
    ap.add_argument(
        "--cold-cache",
        action="store_true",
        help="use empty inductor and native-step caches, so first steps pay the full build",
    )
    ap.add_argument(
        "--no-subprocess",
        action="store_true",
        help="skip timing the first fused step in new processes (warm and empty cache)",
    )
    ap.add_argument("--probe-first-step", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--probe-impl", default="auto", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def gpt_shapes(scale: float) -> list[tuple[int, ...]]:
    """~30M parameters in 100 tensors: embeddings + 8 transformer blocks + final norm."""
    d, layers, vocab, ctx = 384, 8, max(int(40_000 * scale), 16), 1024
    d = max(int(d * scale**0.5) // 8 * 8, 8)
    shapes: list[tuple[int, ...]] = [(vocab, d), (ctx, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,)]
        shapes += [(d,), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,)]
    shapes += [(d,), (d,)]
    return shapes


def small_shapes(scale: float) -> list[tuple[int, ...]]:
    """1,000 small tensors of 64..4096 elements (a fixed pseudo-random mix)."""
    sizes = [64 * (1 + (i * 37) % 64) for i in range(1000)]
    return [(max(int(s * scale), 1),) for s in sizes]


def param_sets(names: list[str], scale: float) -> dict[str, list[tuple[int, ...]]]:
    """The parameter shapes of each named set (exits on an unknown name)."""
    sets = {
        "gpt": gpt_shapes(scale),
        "big": [(int(64 * 2**20 * scale),)],
        "small": small_shapes(scale),
    }
    unknown = set(names) - set(sets)
    if unknown:
        raise SystemExit(f"unknown --sets {sorted(unknown)}; choose from {sorted(sets)}")
    return {n: sets[n] for n in names}


def make_optimizers(torch) -> dict[str, tuple[str, Callable]]:
    """name -> (family, factory(params) -> optimizer)."""
    from optim import Lion

    opts = {
        "lion auto (ours, default)": ("lion", lambda ps: Lion(ps, lr=1e-4, weight_decay=0.1)),
        "lion flat (flatten=True)": (
            "lion",
            lambda ps: Lion(ps, lr=1e-4, weight_decay=0.1, flatten=True),
        ),
        "lion flat, nonfinite=mask": (
            "lion",
            lambda ps: Lion(ps, lr=1e-4, weight_decay=0.1, flatten=True, nonfinite="mask"),
        ),
        "lion auto, nonfinite=mask": (
            "lion",
            lambda ps: Lion(ps, lr=1e-4, weight_decay=0.1, nonfinite="mask"),
        ),
        "lion auto, compiled": (
            "lion",
            lambda ps: WithoutNative(Lion(ps, lr=1e-4, weight_decay=0.1)),
        ),
        "lion flat, compiled kernel": (
            "lion",
            lambda ps: WithoutNative(Lion(ps, lr=1e-4, weight_decay=0.1, flatten=True)),
        ),
        "lion fused (ours)": ("lion", lambda ps: Lion(ps, lr=1e-4, weight_decay=0.1, impl="fused")),
        "lion auto, bf16 params, kahan": (
            "lion-bf16-kahan",
            lambda ps: Lion(ps, lr=1e-4, weight_decay=0.1, kahan_sum=True),
        ),
        "lion fused, bf16 momentum": (
            "lion-bf16m",
            lambda ps: Lion(
                ps, lr=1e-4, weight_decay=0.1, impl="fused", momentum_dtype=torch.bfloat16
            ),
        ),
        "lion foreach (ours)": (
            "lion",
            lambda ps: Lion(ps, lr=1e-4, weight_decay=0.1, impl="foreach"),
        ),
        "lion reference (ours)": (
            "lion",
            lambda ps: Lion(ps, lr=1e-4, weight_decay=0.1, impl="reference"),
        ),
        "adamw fused (torch)": (
            "adamw",
            lambda ps: torch.optim.AdamW(ps, lr=1e-4, weight_decay=0.1, fused=True),
        ),
        "adamw foreach (torch)": (
            "adamw",
            lambda ps: torch.optim.AdamW(ps, lr=1e-4, weight_decay=0.1, foreach=True),
        ),
    }
    try:
        from lion_pytorch import Lion as LionPytorch

        opts["lion-pytorch"] = ("lion", lambda ps: LionPytorch(ps, lr=1e-4, weight_decay=0.1))
    except ImportError:
        print("lion-pytorch is not installed; skipping it", file=sys.stderr)
    return opts


class WithoutNative:
    """An optimizer stepped with the native CPU step turned off (``LIONSWEEP_NATIVE=0``), so
    the compiled per-tensor kernel serves its fp32 tensors: the baseline the native step
    replaced."""

    def __init__(self, opt):
        self.opt, self.state = opt, opt.state

    def step(self) -> None:
        """One step of the wrapped optimizer with the native step off."""
        before = os.environ.get("LIONSWEEP_NATIVE")
        os.environ["LIONSWEEP_NATIVE"] = "0"
        try:
            self.opt.step()
        finally:
            if before is None:
                del os.environ["LIONSWEEP_NATIVE"]
            else:
                os.environ["LIONSWEEP_NATIVE"] = before


def sync(torch, device):
    """Wait for the queued device work to finish (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Triad:
    """a = b + s·c over three fp32 buffers: the streaming-bandwidth yardstick (12 B/elem)."""

    def __init__(self, torch, device, mib: int):
        n = mib * 2**20 // 4
        self.torch, self.n = torch, n
        self.b = torch.rand(n, device=device)
        self.c = torch.rand(n, device=device)
        self.a = torch.empty_like(self.b)
        self.times: list[float] = []
        self.timed_step = _timed(torch, device, self.step)

    def step(self) -> None:
        """One pass of a = b + 0.5·c."""
        self.torch.add(self.b, self.c, alpha=0.5, out=self.a)


def state_bytes(opt) -> int:
    """Bytes held in the optimizer's per-parameter state tensors."""
    total = 0
    for state in opt.state.values():
        for v in state.values():
            if hasattr(v, "element_size"):
                total += v.numel() * v.element_size()
    return total


class Entry:
    """One optimizer on its own copy of the parameter set, ready to step."""

    def __init__(self, torch, device, shapes, factory, fresh_grads: bool, dtype=None):
        gen = torch.Generator(device=device).manual_seed(0)
        dtype = dtype or torch.float32
        self.params = [
            torch.nn.Parameter((torch.randn(s, generator=gen, device=device) * 0.02).to(dtype))
            for s in shapes
        ]
        for p in self.params:
            p.grad = torch.randn(p.shape, generator=gen, device=device).to(dtype)
        self.opt = factory(self.params)
        self.torch, self.device = torch, device
        self.first = self.timed_step()
        # as after zero_grad(set_to_none=True) + backward: .grad is a new tensor every step
        self.fresh = (
            [torch.randn(s, generator=gen, device=device).to(dtype) for s in shapes]
            if fresh_grads
            else None
        )
        self.times: list[float] = []

    def timed_step(self) -> float:
        """Seconds of one optimizer step (fresh .grad tensors first, if asked)."""
        if getattr(self, "fresh", None) is not None:
            for p, g in zip(self.params, self.fresh, strict=True):
                p.grad = g
        sync(self.torch, self.device)
        t0 = time.perf_counter()
        self.opt.step()
        sync(self.torch, self.device)
        return time.perf_counter() - t0


def _timed(torch, device, fn):
    def timed_step() -> float:
        sync(torch, device)
        t0 = time.perf_counter()
        fn()
        sync(torch, device)
        return time.perf_counter() - t0

    return timed_step


def run_rounds(torch, device, entries: dict, repeats: int, warmup: int) -> None:
    """Step every entry once per round, round after round, so load changes hit all alike."""
    for r in range(warmup + repeats):
        for entry in entries.values():
            sec = entry.timed_step()
            if r >= warmup:
                entry.times.append(sec)


def first_step_in_new_process(args, cold: bool, impl: str) -> float:
    """Seconds of the first Lion step (``impl``) on the gpt set in a fresh Python process."""
    env = dict(os.environ)
    tmp = None
    if cold:
        tmp = tempfile.TemporaryDirectory(prefix="inductor-cold-")
        env["TORCHINDUCTOR_CACHE_DIR"] = tmp.name
        env["LIONSWEEP_CACHE_DIR"] = tmp.name  # the native step is built anew too
    cmd = [sys.executable, __file__, "--probe-first-step", "--scale", str(args.scale)]
    cmd += ["--probe-impl", impl]
    if args.device:
        cmd += ["--device", args.device]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return float(out.stdout.strip().splitlines()[-1])


def probe_first_step(args) -> None:
    """Print the seconds of one first fused Lion step (run in a child process)."""
    import torch

    from optim import Lion

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    params = [torch.nn.Parameter(torch.randn(s, device=device)) for s in gpt_shapes(args.scale)]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = Lion(params, lr=1e-4, weight_decay=0.1, impl=args.probe_impl)
    sync(torch, device)
    t0 = time.perf_counter()
    opt.step()
    sync(torch, device)
    print(time.perf_counter() - t0)


def machine(torch, device) -> str:
    """A one-line description of the device (GPU and CUDA, or CPU model and threads)."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def main(argv=None) -> int:
    """Time every optimizer on every parameter set and print the tables; returns the exit code."""
    args = parse_args(argv)
    if args.probe_first_step:
        probe_first_step(args)
        return 0
    if args.cold_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")
        os.environ["LIONSWEEP_CACHE_DIR"] = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sets = param_sets([s.strip() for s in args.sets.split(",") if s.strip()], args.scale)
    optimizers = make_optimizers(torch)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",")]
        optimizers = {k: v for k, v in optimizers.items() if any(w in k for w in wanted)}
    from optim import kernels

    # impl="auto" compiles its kernel in the background and steps with foreach meanwhile:
    # build the kernels first, so the rounds time the steady state.
    for dtype, momentum, kahan, count in (
        (torch.float32, torch.float32, False, True),
        (torch.float32, torch.float32, False, False),
        (torch.float32, torch.bfloat16, False, True),
        (torch.bfloat16, torch.bfloat16, True, True),
    ):
        kernels.readiness.ready(device, dtype, momentum, kahan, block=True, count=count)
    from optim import native

    built = native.library() is not None
    state = "built" if built else f"off ({native.error or 'LIONSWEEP_NATIVE=0'})"
    print(f"machine: {machine(torch, device)}; torch {torch.__version__}; device {device}")
    print(f"native CPU step: {state}")
    print(
        f"{args.repeats} rounds after {args.warmup} warm-up rounds; each round steps every "
        "optimizer once (interleaved), fp32 params; ms/step = median, best = min"
    )
    header = (
        f"{'set':6} {'optimizer':28} {'ms/step':>9} {'best ms':>8} {'x adamw-fused':>13} "
        f"{'GB/s':>7} {'% triad':>8} {'first step s':>12} {'state MB':>9} {'state B/p':>9}"
    )
    results, triads = {}, {}
    for set_name, shapes in sets.items():
        n = sum(int(torch.Size(s).numel()) for s in shapes)
        entries = {"triad": Triad(torch, device, args.triad_mib)}
        runs = list(optimizers.items())
        # As after zero_grad() (set_to_none=True, torch's default) + backward: fresh .grad.
        for base in (
            "lion flat (flatten=True)",
            "lion auto (ours, default)",
            "lion auto, nonfinite=mask",
            "lion auto, compiled",
        ):
            if base in optimizers:
                runs.insert(1, (base.split(" (")[0] + ", fresh .grad", optimizers[base]))
        # the fresh-.grad run of "lion auto, nonfinite=mask" is named "lion auto, nonfinite=mask,
        # fresh .grad" (no parenthesis to cut)
        families = {}
        for name, (family, factory) in runs:
            dtype = torch.bfloat16 if "bf16 params" in name else None
            entries[name] = Entry(torch, device, shapes, factory, "fresh" in name, dtype)
            families[name] = family
        run_rounds(torch, device, entries, args.repeats, args.warmup)
        triad_entry = entries.pop("triad")
        triad = 12 * triad_entry.n / statistics.median(triad_entry.times) / 1e9
        triad_best = 12 * triad_entry.n / min(triad_entry.times) / 1e9
        triads[set_name] = (triad, triad_best)
        del triad_entry
        print(f"\n[{set_name}] {n / 1e6:.1f}M parameters in {len(shapes)} tensors; ", end="")
        print(
            f"triad a = b + s*c ({args.triad_mib} MiB buffers): {triad:.1f} GB/s "
            f"(best {triad_best:.1f})"
        )
        print(header)
        rows = {}
        for name, entry in entries.items():
            family = families[name]
            sec, best = statistics.median(entry.times), min(entry.times)
            rows[name] = (family, sec, best, entry.first, state_bytes(entry.opt))
        entries.clear()
        gc.collect()
        base = rows.get("adamw fused (torch)")
        for name, (family, sec, best, first, nbytes) in rows.items():
            gbps = BYTES_PER_PARAM[family] * n / sec / 1e9
            ratio = f"{sec / base[1]:.2f}" if base else "-"
            print(
                f"{set_name:6} {name:28} {sec * 1e3:9.2f} {best * 1e3:8.2f} {ratio:>13} "
                f"{gbps:7.1f} {100 * gbps / triad:7.0f}% {first:12.2f} {nbytes / 2**20:9.1f} "
                f"{nbytes / n:9.1f}"
            )
        results[set_name] = rows
    gpt = results.get("gpt", {})
    need = (
        "lion auto, fresh .grad",
        "lion flat (flatten=True)",
        "adamw fused (torch)",
        "lion-pytorch",
    )
    if all(k in gpt for k in need):
        n = sum(int(torch.Size(s).numel()) for s in sets["gpt"])
        default = gpt["lion auto, fresh .grad"]
        flat = gpt["lion flat (flatten=True)"]
        adamw = gpt["adamw fused (torch)"]
        lionpt = gpt["lion-pytorch"]
        triad, triad_best = triads["gpt"]
        checks = []
        for label, k in (("median", 1), ("best", 2)):
            ratio_default = default[k] / adamw[k]
            ratio_flat = flat[k] / adamw[k]
            ratio_lionpt = lionpt[k] / flat[k]
            frac = 20 * n / flat[k] / 1e9 / (triad if k == 1 else triad_best)
            checks += [
                (
                    f"default, fresh .grad <= 0.8x adamw fused ({label})",
                    ratio_default,
                    ratio_default <= 0.8,
                ),
                (f"flat <= 0.75x adamw fused ({label})", ratio_flat, ratio_flat <= 0.75),
                (f"flat >= 6x faster than lion-pytorch ({label})", ratio_lionpt, ratio_lionpt >= 6),
                (f"flat >= 80% of triad bandwidth ({label})", frac, frac >= 0.8),
            ]
        if not args.no_subprocess:
            for label, cold in (("warm caches", False), ("empty caches", True)):
                sec = first_step_in_new_process(args, cold, "auto")
                name = f"first default step <= 5 s (new process, {label})"
                checks.append((name, sec, sec <= 5.0))
                sec = first_step_in_new_process(args, cold, "fused")
                checks.append((f"first fused step, waits to compile ({label})", sec, None))
        print("\ntargets (gpt set):")
        for label, value, ok in checks:
            verdict = "-" if ok is None else "met" if ok else "MISSED"
            print(f"  {label:52} {value:8.2f}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
