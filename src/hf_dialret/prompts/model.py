"""``DialCLIPPromptModel``: the PEFT tuner that injects DialCLIP's prompts and experts into a ``DialCLIPModel``."""

from __future__ import annotations

import re

from peft.tuners.tuners_utils import BaseTuner
from torch import nn

from .config import DEFAULT_TARGET_MODULES, DialCLIPPromptConfig
from .layer import DialCLIPEncoderLayer, DialCLIPLayer, DialCLIPProjectionLayer

_LAYER_KEY = re.compile(r"(?:^|\.)(text_model|vision_model)\.encoder\.layers\.(\d+)$")
_PROJECTION_KEY = re.compile(r"(?:^|\.)(text_projection|visual_projection)$")
# Retrieval types, named by the response modality (the query is always the current turn's text, see docs/dialclip.md):
# CLIP's text projection serves the query of both types (and the text responses of text→text); its visual
# projection serves the image responses of text→image.
PROJECTION_EXPERTS = {"text_projection": ("text", "image"), "visual_projection": ("image",)}


class DialCLIPPromptModel(BaseTuner):
    """Wraps every CLIP encoder layer (domain prompts; the text layer at ``context_prompt_layer`` also holds the
    Context Prompt Generator) and both CLIP projections (Mixture of Projection experts) of a ``DialCLIPModel``.

    All trainable state lives in the wrapped layers, none on the tuner itself, so ``uses_shared_state`` stays False
    and transformers' ``model.load_adapter(...)`` works as well as ``PeftModel.from_pretrained``.
    """

    prefix: str = "dialclip_"
    tuner_layer_cls = DialCLIPLayer
    target_module_mapping: dict = {}
    uses_shared_state = False

    def _prepare_adapter_config(self, peft_config: DialCLIPPromptConfig, model_config: dict) -> DialCLIPPromptConfig:
        if peft_config.target_modules is None:
            peft_config.target_modules = DEFAULT_TARGET_MODULES
        return peft_config

    def _pre_injection_hook(self, model: nn.Module, config: DialCLIPPromptConfig, adapter_name: str) -> None:
        clip_config = getattr(getattr(model, "config", None), "clip_config", None)
        if clip_config is None or not hasattr(model, "clip"):
            raise TypeError(
                f"DialCLIPPromptConfig adapts a hf_dialret DialCLIPModel (DialCLIPModel.from_clip(...)), got "
                f"{type(model).__name__}"
            )
        n_layers = clip_config.text_config.num_hidden_layers
        if config.context_prompt_length > 0 and not 1 <= config.context_prompt_layer <= n_layers:
            raise ValueError(
                f"context_prompt_layer={config.context_prompt_layer} is outside the text encoder's layers 1..{n_layers}"
            )

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        # PEFT strips the adapter name only as the last or second-to-last key segment; the Context Prompt
        # Generator nests deeper (dialclip_context_generator.<adapter>.mapping.weight). Strip it right after any
        # dialclip_* container instead, so an adapter saved as "default" loads under any other name.
        return re.sub(rf"(^|\.)({re.escape(cls.prefix)}[A-Za-z0-9_]+)\.{re.escape(adapter_name)}(?=\.|$)", r"\1\2", key)

    def _create_and_replace(self, peft_config: DialCLIPPromptConfig, adapter_name: str, target: nn.Module,
                            target_name: str, parent: nn.Module, current_key: str, **kwargs) -> None:
        if isinstance(target, DialCLIPLayer):
            target.update_layer(adapter_name, peft_config)
            return
        layer_match, projection_match = _LAYER_KEY.search(current_key), _PROJECTION_KEY.search(current_key)
        if layer_match:
            new_module: nn.Module = DialCLIPEncoderLayer(
                target, adapter_name, peft_config, tower="text" if layer_match.group(1) == "text_model" else "vision",
                layer_index=int(layer_match.group(2)), context_feature_dim=self.model.config.clip_config.projection_dim,
            )
        elif projection_match and isinstance(target, nn.Linear):
            new_module = DialCLIPProjectionLayer(
                target, adapter_name, peft_config, experts=PROJECTION_EXPERTS[projection_match.group(1)]
            )
        else:
            raise ValueError(
                f"DialCLIPPromptConfig wraps CLIP encoder layers and the CLIP projections only; target_modules "
                f"matched {current_key!r} ({type(target).__name__})"
            )
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)  # a second, inactive adapter is not trained by default
        self._replace_module(parent, target_name, new_module, target)


__all__ = ["DialCLIPPromptModel", "PROJECTION_EXPERTS"]
