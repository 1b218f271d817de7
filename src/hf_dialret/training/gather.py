"""Cross-process gathering for in-batch negatives.

``accelerate.gather`` and ``Accelerator.gather_for_metrics`` do not carry gradients, which is fine for evaluation but
wrong for a contrastive loss whose negatives come from other processes: the embeddings of those negatives must
receive the gradient of every process's loss. :func:`all_gather_with_grad` uses
``torch.distributed._functional_collectives.all_gather_single``, whose backward is a reduce-scatter **sum** (the
replacement that the deprecation message of ``torch.distributed.nn.functional.all_gather`` recommends).

Every helper is a no-op in a single process, so the trainer code path is the same with and without ``torchrun``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def gather_sizes(local_size: int, device: torch.device) -> list[int]:
    """First-dimension size of the local tensor on every process, in rank order."""
    if not is_distributed():
        return [local_size]
    local = torch.tensor([local_size], dtype=torch.long, device=device)
    sizes = torch.empty(get_world_size(), dtype=torch.long, device=device)
    dist.all_gather_into_tensor(sizes, local)
    return [int(size) for size in sizes.tolist()]


def all_gather_with_grad(tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """Concatenate ``tensor`` from every process along dim 0, in rank order, keeping the autograd graph.

    The collective needs equal shapes, so a smaller local tensor is zero-padded to the largest size and the padding
    is cut out again after the gather (the cut is an index selection, so gradients still flow to the real rows).
    Integer tensors (modalities, ids) are gathered the same way; they simply carry no gradient.

    Args:
        tensor: the local tensor, gathered along its first dimension.
        sizes: the first-dimension size on every process (:func:`gather_sizes`); computed when not given. Pass it when
            gathering several tensors of one batch to save a collective per tensor.
    """
    if not is_distributed():
        return tensor
    from torch.distributed._functional_collectives import all_gather_single

    sizes = gather_sizes(tensor.size(0), tensor.device) if sizes is None else sizes
    largest = max(sizes)
    local = tensor.contiguous()
    if local.size(0) < largest:
        padding = local.new_zeros((largest - local.size(0), *local.shape[1:]))
        local = torch.cat([local, padding])
    gathered = all_gather_single(local, 0, dist.group.WORLD)
    if all(size == largest for size in sizes):
        return gathered
    keep = torch.cat([torch.arange(size, device=gathered.device) + rank * largest for rank, size in enumerate(sizes)])
    return gathered.index_select(0, keep)


def global_offset(sizes: list[int]) -> int:
    """Row of this process's first example in the gathered tensor (sum of the sizes of lower ranks)."""
    return sum(sizes[: get_rank()])
