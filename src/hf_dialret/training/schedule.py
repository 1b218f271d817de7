"""A learning-rate schedule that also follows a wall-clock budget.

With ``max_train_seconds`` the run may end long before ``max_steps``; a step-based cosine schedule would then stop
at a high learning rate, which costs accuracy. Here the schedule's progress is
``max(step / max_steps, elapsed / max_seconds)``: whichever limit comes first drives warm-up and decay, so the
learning rate reaches its floor exactly when the run ends. Without a binding time limit it is the usual schedule.
In a distributed run rank 0's clock is broadcast, so every process applies the same learning rate.

``warmup_stable_decay`` (WSD) holds the peak learning rate after warm-up and decays it (cosine, to zero) over the last
``decay_ratio`` of the progress only; with a time budget that is the last ``decay_ratio`` of the seconds.
"""

from __future__ import annotations

import math
import time

import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import LambdaLR

from .gather import is_distributed

#: ``lr_scheduler_type`` values this schedule implements (others fall back to the step-based transformers one).
SUPPORTED = ("linear", "cosine", "constant", "constant_with_warmup", "warmup_stable_decay")
#: Share of a WSD run spent decaying when ``lr_scheduler_kwargs`` does not say.
DEFAULT_DECAY_RATIO = 0.2


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
    decay_ratio: float = DEFAULT_DECAY_RATIO,
) -> LambdaLR:
    """Warm-up then ``kind`` decay over the budget progress (see the module docstring); ``max_seconds=math.inf`` is a
    plain step schedule. ``decay_ratio``: the decaying share of a ``warmup_stable_decay`` run."""
    if kind not in SUPPORTED:
        raise ValueError(f"time-aware schedules support {SUPPORTED}, got {kind!r}")
    if not 0.0 < decay_ratio <= 1.0:
        raise ValueError(f"decay_ratio must be in (0, 1], got {decay_ratio}")
    progress = BudgetProgress(num_training_steps, max_seconds)
    warmup = 0.0 if kind == "constant" else num_warmup_steps / max(1, num_training_steps)
    decay_start = max(warmup, 1.0 - decay_ratio) if kind == "warmup_stable_decay" else warmup

    def factor(step: int) -> float:
        done = progress(step)
        if done < warmup:
            return max(done / warmup, 1.0 / max(1, num_training_steps))
        if kind.startswith("constant") or done < decay_start:
            return 1.0
        decayed = (done - decay_start) / max(1e-8, 1.0 - decay_start)
        return max(0.0, 1.0 - decayed) if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * decayed))

    return LambdaLR(optimizer, factor)


def wsd_decay_ratio(scheduler_kwargs: dict | None, num_training_steps: int) -> float:
    """The decaying share of a WSD run from ``lr_scheduler_kwargs``: ``decay_ratio``, or transformers'
    ``num_decay_steps`` as a share of ``num_training_steps``; :data:`DEFAULT_DECAY_RATIO` when neither is given."""
    kwargs = dict(scheduler_kwargs or {})
    unknown = set(kwargs) - {"decay_ratio", "num_decay_steps"}
    if unknown:
        raise ValueError(
            f"lr_scheduler_kwargs {sorted(unknown)} are not supported by the time-aware warmup_stable_decay schedule "
            "(it takes decay_ratio or num_decay_steps); drop them, or, to use transformers' own WSD with them, unset "
            "max_train_seconds and give num_decay_steps instead of decay_ratio"
        )
    if "decay_ratio" in kwargs:
        return float(kwargs["decay_ratio"])
    if "num_decay_steps" in kwargs:
        return min(1.0, int(kwargs["num_decay_steps"]) / max(1, num_training_steps))
    return DEFAULT_DECAY_RATIO
