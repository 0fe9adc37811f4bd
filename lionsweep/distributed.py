"""torch.distributed helpers: which rank talks to the server, and sharing its answers.

Under ``torchrun`` (DDP and friends) only rank 0 speaks HTTP; what it learns (a trial's
assignment, a report's stop decision) is broadcast so every rank acts on it in the same
step. Without an initialized default process group (or with one process) nothing is
broadcast and this process is rank 0. Torch is imported only when a process group exists.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def active() -> bool:
    """Whether a default process group of more than one process is initialized."""
    if "torch" not in sys.modules:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank: the process group's, else ``RANK`` from torchrun, else 0."""
    if active():
        import torch.distributed as dist

        return dist.get_rank()
    return int(os.environ.get("RANK", "0") or 0)


def world_size() -> int:
    """The number of processes: the process group's, else ``WORLD_SIZE``, else 1."""
    if active():
        import torch.distributed as dist

        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _device() -> Any:
    """Where a collective's tensor must live for the default group's backend."""
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_code(code: int) -> int:
    """Rank 0's ``code`` on every rank (a collective: every rank must call it)."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([code], dtype=torch.int64, device=_device())
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def broadcast_object(obj: Any) -> Any:
    """Rank 0's picklable ``obj`` on every rank (a collective: every rank must call it)."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_device())
    return box[0]
