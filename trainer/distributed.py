"""DDP in a few lines: detected from torchrun's RANK/WORLD_SIZE, a plain single process otherwise.

    dist_info = distributed.setup(config["device"])
    model = distributed.wrap(model, dist_info)   # DistributedDataParallel when world_size > 1
    ...
    if dist_info.is_master: log, evaluate, save
    distributed.finish(dist_info)  # cleanup(); under torchrun also os._exit(0)

gloo on CPU, nccl on CUDA. Each rank draws a different slice of the data stream (see shard_start in the scripts).
"""
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    is_master: bool
    device: torch.device


def setup(device="auto"):
    """Join the process group when started by torchrun; return this process's place in it.

    device: "auto" (cuda when available, else cpu), "cpu" or "cuda".
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return DistInfo(rank=0, world_size=1, local_rank=0, is_master=True, device=torch.device(device))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl", rank=rank, world_size=world_size)
        torch_device = torch.device("cuda", local_rank)
    else:
        dist.init_process_group(backend="gloo", rank=rank, world_size=world_size)
        torch_device = torch.device("cpu")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, is_master=rank == 0, device=torch_device)


def wrap(model, dist_info):
    """The model for the training step: DistributedDataParallel when there is more than one process."""
    if dist_info.world_size == 1:
        return model
    device_ids = [dist_info.local_rank] if dist_info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model):
    """The plain module inside a DDP wrapper (what gets saved and evaluated)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def batch_start(step: int, rank: int, world_size: int, batch_size: int) -> int:
    """The index, in a seeded sample stream, of the first sample of one rank's batch at one step: the ranks take
    consecutive slices, so a run's samples do not depend on how many processes share them out."""
    return (step * world_size + rank) * batch_size


def all_reduce_mean(value, dist_info):
    """The mean of a float over all processes (for logging one loss per step)."""
    if dist_info.world_size == 1:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=dist_info.device)
    dist.all_reduce(tensor)
    return tensor.item() / dist_info.world_size


def barrier(dist_info):
    if dist_info.world_size > 1:
        dist.barrier()


def cleanup():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def finish(dist_info):
    """The end of a worker's run: cleanup(), and under torchrun leave at once (os._exit(0) after flushing), before the
    run's objects are released. With Debian's torch 1.13 (gloo) a worker sometimes hung in that release after its
    last line: test_ddp's stacks showed rank 1 at `main(...)` in <module> with a native thread left, the master gone.
    Everything a run writes is written and closed by then (checkpoints, progress lines, packages)."""
    cleanup()
    if dist_info.world_size > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def any_rank(flag, dist_info):
    """True on every process when `flag` is true on any of them (so all ranks stop at the same step)."""
    if dist_info.world_size == 1:
        return bool(flag)
    tensor = torch.tensor([1.0 if flag else 0.0], device=dist_info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.item() > 0


def all_gather_object(obj, dist_info):
    """[obj of rank 0, obj of rank 1, ...] on every process."""
    if dist_info.world_size == 1:
        return [obj]
    objects = [None] * dist_info.world_size
    dist.all_gather_object(objects, obj)
    return objects
