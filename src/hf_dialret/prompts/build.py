"""Entry points for training and loading DialCLIP: a CLIP backbone + a DialCLIP prompt adapter as a ``PeftModel``."""

from __future__ import annotations

import os

from peft import PeftConfig, PeftModel, get_peft_model

from ..modeling.modeling_dialclip import DialCLIPModel
from .config import DialCLIPPromptConfig


def load_dialclip_backbone(clip_backbone: str | os.PathLike, **kwargs) -> DialCLIPModel:
    """A frozen-CLIP ``DialCLIPModel`` from a transformers CLIP id/directory, a saved DialCLIP directory, or
    ``"open_clip:<model name>[/<pretrained tag>]"`` (converted to a transformers CLIPModel)."""
    return DialCLIPModel.from_pretrained(str(clip_backbone), **kwargs)


def build_dialclip_for_training(
    clip_backbone: str | os.PathLike,
    prompt_config: DialCLIPPromptConfig | None = None,
    *,
    adapter_name: str = "default",
) -> PeftModel:
    """``get_peft_model(DialCLIPModel(<clip_backbone>), prompt_config)``: CLIP frozen, only the adapter trainable.

    Args:
        clip_backbone: what ``load_dialclip_backbone`` accepts; recorded as the adapter's
            ``base_model_name_or_path`` so a saved adapter names its base CLIP.
        prompt_config: the adapter's configuration (default: ``DialCLIPPromptConfig()``, the paper's three parts
            at ≤ 0.1 % of ViT-B/32).
        adapter_name: name of the adapter inside the ``PeftModel``.
    """
    model = load_dialclip_backbone(clip_backbone)
    return get_peft_model(model, prompt_config or DialCLIPPromptConfig(), adapter_name=adapter_name)


def load_dialclip(
    adapter_path: str | os.PathLike,
    *,
    clip_backbone: str | os.PathLike | None = None,
    is_trainable: bool = False,
    adapter_name: str = "default",
) -> PeftModel:
    """Load a saved DialCLIP adapter onto its base CLIP (the one it names, unless ``clip_backbone`` overrides it)."""
    config = PeftConfig.from_pretrained(str(adapter_path))
    base = clip_backbone or config.base_model_name_or_path
    if not base:
        raise ValueError(
            f"The adapter at {adapter_path} names no base CLIP; pass clip_backbone=<id, dir or open_clip:name>"
        )
    model = load_dialclip_backbone(base)
    return PeftModel.from_pretrained(model, str(adapter_path), adapter_name=adapter_name, is_trainable=is_trainable)


__all__ = ["build_dialclip_for_training", "load_dialclip", "load_dialclip_backbone"]
