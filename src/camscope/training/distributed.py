"""Data-parallel training through torch's own engine: DistributedDataParallel under ``torchrun``.

``torchrun --nproc_per_node N -m camscope train ...`` (or several machines with ``--nnodes``) sets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; the run joins that process group (NCCL on GPUs, gloo
on CPUs), wraps the model in :class:`torch.nn.parallel.DistributedDataParallel` and shards the data
with :class:`torch.utils.data.DistributedSampler`. ``devices=N`` starts the same N processes from
inside camscope with torchrun's launcher (:func:`torch.distributed.launcher.api.elastic_launch`),
so both paths run the same code. Every rank trains; rank 0 alone writes the run folder.

Each rank's gradient is the mean over its share of the batch and DDP averages them, so N processes
with ``batch_size`` B each make the same step as one process with batch N x B (up to the order of
float sums; batch-norm statistics stay per process).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import CamscopeError, UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` (``size == 1``: no process group)."""

    rank: int = 0
    size: int = 1
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def join(device_type: str) -> World:
    """Join the process group ``torchrun`` describes in the environment, if any."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank = int(os.environ.get("RANK", "0"))
    if dist.is_initialized():
        return World(rank, size)
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return World(rank, size, owns_group=True)


def leave(world: World) -> None:
    if world.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def sum_tensor(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed element-wise over all ranks, in place (as it is without a group)."""
    if world.size > 1:
        dist.all_reduce(tensor)
    return tensor


def gather_lists(world: World, items: list[Any]) -> list[Any]:
    """All ranks' ``items`` concatenated (pickled objects; for short lists such as skipped files)."""
    if world.size == 1:
        return items
    parts: list[Any] = [None] * world.size
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in (part or [])]


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def _worker(entry: Callable[[Any], Any], argument: Any, threads: int) -> Any:
    """Runs in each launched process: a user error comes back as text, not a crash report."""
    torch.set_num_threads(threads)
    try:
        return ("ok", entry(argument))
    except CamscopeError as err:
        return ("error", str(err))


def launch(entry: Callable[[Any], Any], argument: Any, processes: int) -> Any:
    """Run ``entry(argument)`` in ``processes`` local processes with torchrun's launcher and return
    rank 0's result.

    Raises:
        UsageError: a rank raised a camscope error (its message), or the launch failed.
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
        start_method="spawn",
        monitor_interval=0.1,
    )
    threads = max(1, torch.get_num_threads() // processes)
    try:
        results = elastic_launch(config, _worker)(entry, argument, threads)
    except Exception as err:
        raise UsageError(
            f"data-parallel training with {processes} processes failed: {err}"
        ) from err
    errors = [value for status, value in results.values() if status == "error"]
    if errors:
        raise UsageError(errors[0])
    return results[0][1]
