"""DialCLIP's prompts as a PEFT method (domain prompts, context prompts, Mixture of Projection experts).

Importing this package registers the method with PEFT (idempotently), so ``get_peft_model(model,
DialCLIPPromptConfig())``, ``PeftModel.from_pretrained`` and ``AutoPeftModel.from_pretrained(...,
import_allowlist=["hf_dialret"])`` work. PEFT has no remote-code mechanism for adapter types: whoever loads a
DialCLIP adapter needs ``hf_dialret`` installed and imported.
"""

from __future__ import annotations

import peft.mapping as _peft_mapping

from .build import build_dialclip_for_training, load_dialclip, load_dialclip_backbone
from .config import DEFAULT_TARGET_MODULES, DialCLIPPeftType, DialCLIPPromptConfig
from .layer import ContextPromptGenerator, DialCLIPEncoderLayer, DialCLIPLayer, DialCLIPProjectionLayer
from .model import PROJECTION_EXPERTS, DialCLIPPromptModel
from .pretrain_tiny import (
    TinyClipPretrainingArguments,
    pretrain_tiny_clip,
    read_pretraining_record,
    tiny_clip_prompt_config,
)
from .tiny import save_tiny_clip


def register_dialclip_peft_method() -> None:
    """Register the DIALCLIP PEFT type in PEFT's registries (safe to call more than once)."""
    peft_type = DialCLIPPeftType.DIALCLIP
    _peft_mapping.PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] = DialCLIPPromptConfig
    _peft_mapping.PEFT_TYPE_TO_TUNER_MAPPING[peft_type] = DialCLIPPromptModel
    _peft_mapping.PEFT_TYPE_TO_PREFIX_MAPPING[peft_type] = DialCLIPPromptModel.prefix


register_dialclip_peft_method()

__all__ = [
    "DEFAULT_TARGET_MODULES",
    "PROJECTION_EXPERTS",
    "ContextPromptGenerator",
    "DialCLIPEncoderLayer",
    "DialCLIPLayer",
    "DialCLIPPeftType",
    "DialCLIPProjectionLayer",
    "DialCLIPPromptConfig",
    "DialCLIPPromptModel",
    "TinyClipPretrainingArguments",
    "build_dialclip_for_training",
    "load_dialclip",
    "load_dialclip_backbone",
    "pretrain_tiny_clip",
    "read_pretraining_record",
    "register_dialclip_peft_method",
    "save_tiny_clip",
    "tiny_clip_prompt_config",
]
