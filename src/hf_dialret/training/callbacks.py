"""Trainer callbacks of hf_dialret."""

from __future__ import annotations

import time

import torch
import torch.distributed as dist
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .gather import is_distributed


class TimeBudgetCallback(TrainerCallback):
    """Stop training after ``max_seconds`` of wall-clock time in the training loop.

    ``max_steps`` alone cannot guarantee a time limit on a machine whose speed is unknown (shared CPU cores); this
    callback ends the run after the first optimizer step past the budget, through ``should_training_stop``, so the
    Trainer still saves and evaluates as at a normal end. In a distributed run rank 0's clock decides for everyone:
    ranks that stopped at different steps would hang in the next collective.
    """

    def __init__(self, max_seconds: float) -> None:
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self.max_seconds = float(max_seconds)
        self.start: float | None = None
        #: True once the budget ended a run (False when it finished by max_steps / epochs first).
        self.stopped_early = False

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        self.start = time.perf_counter()
        self.stopped_early = False

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if self.start is None:
            return
        over = time.perf_counter() - self.start >= self.max_seconds
        if is_distributed():
            flag = torch.tensor([int(over)], device=args.device if dist.get_backend() == "nccl" else "cpu")
            dist.broadcast(flag, src=0)
            over = bool(flag.item())
        if over and state.global_step < state.max_steps:
            self.stopped_early = True
            control.should_training_stop = True
            # as at the end of max_steps: a checkpoint to resume from and a final evaluation, where asked for
            control.should_save = args.save_strategy != "no"
            control.should_evaluate = args.eval_strategy != "no"
