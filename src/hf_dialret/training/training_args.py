"""``TrainingArguments`` with defaults that suit contrastive dialogue-response retrieval."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments


@dataclass
class DialogueRetrievalTrainingArguments(TrainingArguments):
    """:class:`transformers.TrainingArguments` plus the retrieval options of :class:`DialogueRetrievalTrainer`.

    Changed defaults, and why:

    - ``remove_unused_columns=False``: the collator needs the raw ``context`` / ``response`` columns, which are not
      ``forward`` parameters; the Trainer would otherwise drop them before collation.
    - ``per_device_train_batch_size=64``: in-batch negatives make larger batches a harder, better training signal.
    - ``learning_rate=5e-5`` and ``warmup_steps=0.1`` (a float is a ratio of the total steps): fine-tuning pretrained
      BERT/ResNet towers. Tiny from-scratch models want a much higher rate (the CLI preset uses 1e-3).
    - ``ddp_find_unused_parameters=False``: every tower takes part in every step of the default recipes, and the
      unused-parameter search would also flag the logit scale, which the loss uses outside ``forward``.
    - ``dataloader_drop_last=False``: in transformers it also drops evaluation queries.
    - ``use_cpu`` turns itself on for a multi-process launch (``torchrun``, ``accelerate launch``) on a machine
      without an accelerator: accelerate only sets up CPU data parallelism (gloo) with ``cpu=True``; without it
      every process would train alone on its own data shard, each believing it is the only one.
    - ``optim="adamw_torch_fused"``: the same AdamW update in one fused kernel over all parameters (on CPU since
      torch 2.4). transformers picks it by default only from torch 2.8; before that its ``"adamw_torch"`` steps
      parameter by parameter on the CPU: 4× the fused step's time for MDR-base's 197M parameters at one thread
      (1.34 vs 0.32 s), far more with contended threads (BENCHMARKS.md §2).
    """

    dataloader_pin_memory: bool = field(
        default_factory=torch.cuda.is_available,
        metadata={"help": "Pin host memory for faster copies to the GPU (off without one: it only warns there)."},
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep raw columns: the dialogue collator needs `context` and `response`."}
    )
    per_device_train_batch_size: int = field(
        default=64, metadata={"help": "Training batch size per device; every other example is an in-batch negative."}
    )
    per_device_eval_batch_size: int = field(default=128, metadata={"help": "Encoding batch size for evaluation."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak AdamW learning rate."})
    warmup_steps: float = field(
        default=0.1, metadata={"help": "Warm-up steps; a float below 1 is a fraction of the total training steps."}
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    optim: str = field(
        default="adamw_torch_fused",
        metadata={"help": "Optimizer (transformers' OptimizerNames); the default is AdamW in one fused kernel."},
    )
    logging_steps: float = field(default=10, metadata={"help": "Log the training loss every N steps."})
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "Let DDP search for parameters unused in a step (slower; off by default)."}
    )
    gather_negatives_across_processes: bool = field(
        default=True,
        metadata={
            "help": "Use the responses of every process as in-batch negatives (gathered with gradient). "
            "Off: each process only contrasts against its own batch."
        },
    )
    recall_ks: list[int] = field(
        default_factory=lambda: [1, 5, 10], metadata={"help": "Cut-offs k reported as recall@k during evaluation."}
    )
    gradient_cache_chunk_size: int | None = field(
        default=None,
        metadata={
            "help": "Cached (GradCache) contrastive loss: embed the batch in chunks of this many examples without a "
            "graph, then backprop chunk by chunk, so peak activation memory is one chunk's whatever the batch "
            "(same loss and gradients; about one extra forward pass). Unset: off."
        },
    )
    max_train_seconds: float | None = field(
        default=None,
        metadata={
            "help": "Wall-clock budget in seconds: training stops (and saves, as at the end) after the first step "
            "past it, and the learning-rate schedule ends with it. Under `hf-dialret train` it also covers "
            "pre-encoding. Unset or 0: no limit (the tiny preset of `hf-dialret train` sets 300; pass 0 to lift it)."
        },
    )

    def __post_init__(self):
        if not self.use_cpu and _launched_multi_process() and not _has_accelerator():
            self.use_cpu = True
        super().__post_init__()


#: Where launchers put the number of processes: torchrun / accelerate launch, Intel MPI, Open MPI, MVAPICH.
LAUNCHER_WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _launched_multi_process() -> bool:
    """Whether a launcher (torchrun, accelerate launch, mpirun) started this process as one of several."""
    sizes = (os.environ.get(name) for name in LAUNCHER_WORLD_SIZE_VARIABLES)
    return any(size is not None and size.isdigit() and int(size) > 1 for size in sizes)


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, XPU, MPS, ... in one check
    if accelerator is not None:
        return accelerator.is_available()
    return torch.cuda.is_available() or torch.backends.mps.is_available()
