"""A learning-rate schedule that also follows a wall-clock budget.

With ``max_train_seconds`` the run may end long before ``max_steps``; a step-based cosine schedule would then stop
at a high learning rate, which costs accuracy. Here the schedule's progress is
``max(step / max_steps, elapsed / max_seconds)``: whichever limit comes first drives warm-up and decay, so the
learning rate reaches its floor exactly when the run ends. Without a binding time limit it is the usual schedule.
In a distributed run rank 0's clock is broadcast, so every process applies the same learning rate.
"""

from __future__ import annotations

import math
import time

import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import LambdaLR

from .gather import is_distributed

#: ``lr_scheduler_type`` values this schedule implements (others fall back to the step-based transformers one).
SUPPORTED = ("linear", "cosine", "constant", "constant_with_warmup")


class BudgetProgress:
    """Training progress in [0, 1] from the step and the wall clock (started on the first call)."""

    def __init__(self, num_training_steps: int, max_seconds: float) -> None:
        self.num_training_steps = max(1, num_training_steps)
        self.max_seconds = float(max_seconds)
        self.start: float | None = None

    def elapsed(self) -> float:
        now = time.perf_counter()
        self.start = now if self.start is None else self.start
        elapsed = now - self.start
        if is_distributed():
            value = torch.tensor([elapsed], dtype=torch.float64)
            if dist.get_backend() == "nccl":
                value = value.cuda()
            dist.broadcast(value, src=0)
            elapsed = float(value.item())
        return elapsed

    def __call__(self, step: int) -> float:
        return min(1.0, max(step / self.num_training_steps, self.elapsed() / self.max_seconds))


def time_aware_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: str,
    num_training_steps: int,
    num_warmup_steps: int,
    max_seconds: float,
) -> LambdaLR:
    """Warm-up then ``kind`` decay over the budget progress (see the module docstring)."""
    if kind not in SUPPORTED:
        raise ValueError(f"time-aware schedules support {SUPPORTED}, got {kind!r}")
    progress = BudgetProgress(num_training_steps, max_seconds)
    warmup = 0.0 if kind == "constant" else num_warmup_steps / max(1, num_training_steps)

    def factor(step: int) -> float:
        done = progress(step)
        if done < warmup:
            return max(done / warmup, 1.0 / max(1, num_training_steps))
        if kind.startswith("constant"):
            return 1.0
        decayed = (done - warmup) / max(1e-8, 1.0 - warmup)
        return max(0.0, 1.0 - decayed) if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * decayed))

    return LambdaLR(optimizer, factor)
