"""Parameter counts of a model, or of a config without building weights (meta device)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoModel, PreTrainedConfig


def _build_on_meta(config: PreTrainedConfig) -> nn.Module:
    # The meta device allocates no storage, so BERT-base x4 + ResNet-50 "build" in a second with no memory.
    with torch.device("meta"):
        return AutoModel.from_config(config)


def count_parameters(model_or_config: nn.Module | PreTrainedConfig) -> dict[str, Any]:
    """Total, trainable and per-component parameter counts.

    Components are the model's top-level sub-modules and bare parameters (e.g. ``context_text``, ``intent_encoder``,
    ``response_text``, ``image_tower``, ``logit_scale``). A parameter shared by several modules counts once (in the
    first component that registers it), so the components add up to the total.

    Returns:
        `dict`: ``{"total": int, "trainable": int, "components": {name: int}}``.
    """
    model = _build_on_meta(model_or_config) if isinstance(model_or_config, PreTrainedConfig) else model_or_config
    components: dict[str, int] = {}
    total = trainable = 0
    for name, param in model.named_parameters():  # de-duplicates shared (tied) parameters
        component = name.split(".", 1)[0]
        components[component] = components.get(component, 0) + param.numel()
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return {"total": total, "trainable": trainable, "components": components}


__all__ = ["count_parameters"]
