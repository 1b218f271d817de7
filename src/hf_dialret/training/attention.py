"""Attention kernel for bf16 training on CPU.

On CPU, PyTorch's SDPA dispatches to its flash-attention kernel, whose *backward* in bf16 is slow: on the tiny
2-layer BERT of the main job (128 dialogues × 94 tokens, 2 threads, torch 2.15) one training step of the encoder took
561 ms with SDPA under bf16 autocast, 206 ms with transformers' eager attention (plain ``bmm`` + softmax, which run
on the bf16 matrix units) and 337 ms in fp32. Inference is not affected (the flash forward is fast), so only
training switches, and only for its duration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers import PreTrainedModel


def sdpa_configs(model: torch.nn.Module) -> list:
    """The distinct configs of the ``PreTrainedModel`` s inside ``model`` that use SDPA attention."""
    configs: dict[int, object] = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if isinstance(module, PreTrainedModel) and getattr(config, "_attn_implementation", None) == "sdpa":
            configs[id(config)] = config
    return list(configs.values())


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module, enabled: bool = True) -> Iterator[int]:
    """Run the SDPA-attention encoders of ``model`` with eager attention inside the block (restored after it).

    Yields how many configs were switched. transformers' attention layers read ``config._attn_implementation`` at
    every forward, so the switch needs no rebuilt modules and leaves the weights alone.
    """
    switched = sdpa_configs(model) if enabled else []
    # The internal attribute, as PreTrainedModel.set_attn_implementation sets it: the public setter of a composite
    # config also rewrites its sub-configs (e.g. a ResNet's, which does not use SDPA and must stay as it was).
    for config in switched:
        config._attn_implementation_internal = "eager"
    try:
        yield len(switched)
    finally:
        for config in switched:
            config._attn_implementation_internal = "sdpa"


def bf16_on_cpu(args) -> bool:
    """Whether ``args`` (TrainingArguments) train in bf16 autocast on the CPU."""
    return bool(args.bf16) and args.device.type == "cpu"
