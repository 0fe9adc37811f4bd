"""optim.Lion under torch.distributed on the CPU (gloo, two processes): DDP trains as a
single process on the whole batch would, and DTensor parameters step shard by shard to the
same values as plain tensors. Also: a model moved after its optimizer was built."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from optim import Lion

WORLD = 2
STEPS = 5


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 96), torch.nn.Tanh(), torch.nn.Linear(96, 1))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 16, generator=g)
    return x, x[:, :1].sin()


def train_single(impl: str) -> list[torch.Tensor]:
    """The same steps in one process on the whole batch."""
    net = model()
    opt = Lion(net.parameters(), lr=1e-2, weight_decay=0.1, impl=impl)
    x, y = batch()
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def _worker(rank: int, init: str, out: str, impl: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    # Compile in this process, not in a pool of compile workers that may outlive it.
    os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        # DDP: each rank sees half the batch; gradients are averaged across ranks.
        net = DistributedDataParallel(model())
        opt = Lion(net.parameters(), lr=1e-2, weight_decay=0.1, impl=impl)
        x, y = batch()
        half = slice(rank * 32, rank * 32 + 32)
        for _ in range(STEPS):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x[half]), y[half]).backward()
            opt.step()
        ddp = [p.detach().clone() for p in net.parameters()]
        gathered = [None] * WORLD if rank == 0 else None
        dist.gather_object(ddp, gathered, dst=0)

        # DTensor: a weight sharded over the two ranks, stepped shard by shard.
        mesh = init_device_mesh("cpu", (WORLD,))
        torch.manual_seed(2)
        full = torch.randn(64, 80)
        grads = [torch.randn(64, 80) for _ in range(STEPS)]
        w = torch.nn.Parameter(distribute_tensor(full, mesh, [Shard(0)]))
        dopt = Lion([w], lr=1e-2, weight_decay=0.1, impl=impl)
        for g in grads:
            w.grad = distribute_tensor(g, mesh, [Shard(0)])
            dopt.step()
        stepped = w.detach().full_tensor()
        if rank == 0:
            plain = torch.nn.Parameter(full.clone())
            popt = Lion([plain], lr=1e-2, weight_decay=0.1, impl="reference")
            for g in grads:
                plain.grad = g.clone()
                popt.step()
            torch.save({"ddp": gathered, "dtensor": stepped, "plain": plain.detach()}, out)
    finally:
        gc.collect()  # the DDP wrapper's reference cycle holds the group (see ddp_train.py)
        dist.destroy_process_group()


@pytest.mark.parametrize("impl", ["auto", "fused", "foreach"])
def test_ddp_and_dtensor_on_two_cpu_processes(impl: str, tmp_path: Path) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    out = tmp_path / "result.pt"
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.start_processes(
        _worker, args=(init, str(out), impl), nprocs=WORLD, join=True, start_method="spawn"
    )
    result = torch.load(out)
    ranks = result["ddp"]
    for a, b in zip(ranks[0], ranks[1], strict=True):
        assert torch.equal(a, b)  # every rank holds the same model
    for a, b in zip(ranks[0], train_single(impl), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result["dtensor"], result["plain"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("flatten", [False, True])
def test_a_model_moved_after_its_optimizer_was_built_still_trains(flatten: bool) -> None:
    net = model()
    opt = Lion(net.parameters(), lr=1e-2, weight_decay=0.1, flatten=flatten)
    x, y = batch()
    net.to(torch.float64)  # before any step
    losses = []
    for step in range(20):
        if step == 10:
            net.to(torch.float32)  # and after some
        opt.zero_grad()
        dtype = next(net.parameters()).dtype
        loss = torch.nn.functional.mse_loss(net(x.to(dtype)), y.to(dtype))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(torch.isfinite(p).all() for p in net.parameters())
