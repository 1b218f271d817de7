"""DialCLIP adapter layers: wrappers around CLIP encoder layers (prompts) and CLIP projections (experts).

The wrapped ``DialCLIPModel`` tells the wrappers what each tower call is for through the per-call
``dialclip_state`` attribute (see ``hf_dialret.modeling.modeling_dialclip``):

* ``{"role": "context"}``: a context turn through the *frozen* towers: the wrappers do nothing.
* ``{"role": "response"}`` (also the default when no state is set): domain prompts only.
* ``{"role": "query", "context_features": fn}``: domain prompts, plus the context prompts from the layer at
  ``context_prompt_layer`` on; that layer's wrapper owns the Context Prompt Generator and calls ``fn()`` for the
  frozen-CLIP context features. Later layers find the context prompts (as processed by the previous layer) in the
  same per-call dict, so they flow through the encoder like ordinary tokens.
* projections: ``{"expert": "text" | "image" | None}`` picks the Mixture-of-Projection expert (None: CLIP's own).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from .config import DialCLIPPromptConfig

STATE_ATTR = "dialclip_state"  # same name as hf_dialret.modeling.modeling_dialclip.STATE_ATTR


def extend_attention_mask(mask: torch.Tensor | None, prefix: int, is_causal: bool) -> torch.Tensor | None:
    """Grow a (B, 1, S, S) attention mask (bool: True = attend; float: 0 = attend) by ``prefix`` leading tokens.

    Real tokens may attend to every prefix token; prefix tokens follow the tower's own rule: causal among
    themselves and blind to the text in a causal (text) tower, so results match the ``mask is None, is_causal``
    path that SDPA takes for unpadded batches. ``None`` stays ``None`` (the attention kernel handles causality).
    """
    if mask is None or prefix == 0:
        return mask
    allowed = mask if mask.dtype == torch.bool else mask == 0
    b, h, q, k = allowed.shape
    new = torch.ones(b, h, prefix + q, prefix + k, dtype=torch.bool, device=mask.device)
    new[..., prefix:, prefix:] = allowed
    if is_causal:
        new[..., :prefix, :prefix] = torch.ones(prefix, prefix, dtype=torch.bool, device=mask.device).tril()
        new[..., :prefix, prefix:] = False
    else:  # prefix tokens see the keys that any real token may see (padding stays hidden)
        new[..., :prefix, prefix:] = allowed.any(dim=-2, keepdim=True)
    if mask.dtype == torch.bool:
        return new
    return torch.zeros(new.shape, dtype=mask.dtype, device=mask.device).masked_fill(~new, torch.finfo(mask.dtype).min)


class ContextPromptGenerator(nn.Module):
    """Context features → M prompt tokens: linear mapping → masked mean pooling over turns → bottlenecked FFN."""

    def __init__(self, feature_dim: int, bottleneck: int, num_prompts: int, hidden_size: int):
        super().__init__()
        self.num_prompts, self.bottleneck = num_prompts, bottleneck
        self.mapping = nn.Linear(feature_dim, bottleneck)  # bridges text and image context features (same CLIP space)
        self.expand = nn.Linear(bottleneck, num_prompts * bottleneck)  # one code per prompt token
        self.up = nn.Linear(bottleneck, hidden_size)  # shared by the M codes: the FFN's wide output costs b×H once

    def forward(self, features: tuple[torch.Tensor, torch.Tensor] | None, batch_size: int) -> torch.Tensor:
        weight = self.mapping.weight
        if features is None:  # no context turns at all: the prompts come from the biases alone
            pooled = weight.new_zeros(batch_size, self.bottleneck)
        else:
            feats, mask = features
            mapped = self.mapping(feats.to(weight.dtype))
            keep = mask.unsqueeze(-1).to(mapped.dtype)
            pooled = (mapped * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        codes = F.gelu(self.expand(pooled)).view(batch_size, self.num_prompts, self.bottleneck)
        return self.up(codes)


class DialCLIPLayer(BaseTunerLayer):
    """Common base of the DialCLIP wrappers (the tuner's ``tuner_layer_cls``)."""

    def _state(self) -> dict[str, Any]:
        return self.__dict__.get(STATE_ATTR) or {}

    def _single_active_adapter(self) -> str | None:
        if self.disable_adapters or not self.active_adapters:
            return None
        if len(self.active_adapters) > 1:
            raise ValueError(f"DialCLIP adapters cannot be combined; active adapters: {self.active_adapters}")
        return self.active_adapters[0]

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise NotImplementedError("DialCLIP prompts and routed experts cannot be merged into CLIP's weights.")

    def unmerge(self) -> None:
        raise NotImplementedError("DialCLIP adapters are never merged.")


class DialCLIPEncoderLayer(nn.Module, DialCLIPLayer):
    """A CLIP encoder layer with deep domain prompts and, in the text tower, context prompts."""

    adapter_layer_names = ("dialclip_domain_prompt", "dialclip_context_generator")
    other_param_names = ("context_prompt_length",)

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: DialCLIPPromptConfig, *, tower: str,
                 layer_index: int, context_feature_dim: int):
        super().__init__()
        self.base_layer = base_layer
        self.tower, self.layer_index, self.context_feature_dim = tower, layer_index, context_feature_dim
        self.hidden_size = base_layer.embed_dim
        self.dialclip_domain_prompt = nn.ParameterDict({})
        self.dialclip_context_generator = nn.ModuleDict({})
        self.context_prompt_length: dict[str, int] = {}  # >0 from the context-prompt layer on (text tower)
        self._active_adapter = adapter_name
        self.merged_adapters: list[str] = []
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config: DialCLIPPromptConfig) -> None:
        prompt = torch.empty(config.domain_prompt_length, self.hidden_size)
        self.dialclip_domain_prompt[adapter_name] = nn.Parameter(nn.init.normal_(prompt, std=config.prompt_init_std))
        start = config.context_prompt_layer - 1
        uses_context = self.tower == "text" and config.context_prompt_length > 0 and self.layer_index >= start
        self.context_prompt_length[adapter_name] = config.context_prompt_length if uses_context else 0
        if uses_context and self.layer_index == start:
            self.dialclip_context_generator[adapter_name] = ContextPromptGenerator(
                self.context_feature_dim, config.context_bottleneck, config.context_prompt_length, self.hidden_size
            )
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        state = self._state()
        adapter = self._single_active_adapter()
        if adapter is None or state.get("role") == "context":
            return self.base_layer(hidden_states, attention_mask, **kwargs)
        batch = hidden_states.size(0)
        prefix = [self.dialclip_domain_prompt[adapter].to(hidden_states.dtype).unsqueeze(0).expand(batch, -1, -1)]
        n_domain = prefix[0].size(1)
        context = None
        if state.get("role") == "query" and self.context_prompt_length.get(adapter, 0) > 0:
            if adapter in self.dialclip_context_generator:
                context = self.dialclip_context_generator[adapter](state["context_features"](), batch)
            else:
                context = state.get("context_prompts")
                if context is None:
                    raise RuntimeError(
                        "DialCLIP context prompts are missing: the text layer that starts them did not run"
                    )
            prefix.append(context.to(hidden_states.dtype))
        n_prefix = sum(p.size(1) for p in prefix)
        if n_prefix == 0:
            return self.base_layer(hidden_states, attention_mask, **kwargs)
        mask = extend_attention_mask(attention_mask, n_prefix, bool(kwargs.get("is_causal", False)))
        out = self.base_layer(torch.cat([*prefix, hidden_states], dim=1), mask, **kwargs)
        if context is not None:
            state["context_prompts"] = out[:, n_domain:n_prefix]  # carried to the next layer: prompts "flow"
        return out[:, n_prefix:]


class DialCLIPProjectionLayer(nn.Module, DialCLIPLayer):
    """A CLIP projection with Mixture-of-Projection experts: ``W x + U_e D_e x`` for the routed expert ``e``."""

    adapter_layer_names = ("dialclip_expert_down", "dialclip_expert_up")
    other_param_names = ("expert_names",)

    def __init__(self, base_layer: nn.Linear, adapter_name: str, config: DialCLIPPromptConfig, *,
                 experts: tuple[str, ...]):
        super().__init__()
        self.base_layer = base_layer
        self.experts = experts
        self.dialclip_expert_down = nn.ParameterDict({})
        self.dialclip_expert_up = nn.ParameterDict({})
        self.expert_names: dict[str, tuple[str, ...]] = {}
        self._active_adapter = adapter_name
        self.merged_adapters: list[str] = []
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config: DialCLIPPromptConfig) -> None:
        rank, n = config.expert_rank, len(self.experts)
        down = torch.empty(n, rank, self.base_layer.in_features)
        bound = 1.0 / math.sqrt(self.base_layer.in_features)  # nn.Linear's default range, as LoRA's A
        self.dialclip_expert_down[adapter_name] = nn.Parameter(nn.init.uniform_(down, -bound, bound))
        # zero "up" matrices: a fresh adapter leaves CLIP's projections (and so CLIP's embeddings) unchanged
        self.dialclip_expert_up[adapter_name] = nn.Parameter(torch.zeros(n, self.base_layer.out_features, rank))
        self.expert_names[adapter_name] = self.experts
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.base_layer(x, *args, **kwargs)
        adapter = self._single_active_adapter()
        expert = self._state().get("expert")
        if adapter is None or expert is None or expert not in self.expert_names[adapter]:
            return out
        e = self.expert_names[adapter].index(expert)
        down, up = self.dialclip_expert_down[adapter][e], self.dialclip_expert_up[adapter][e]
        if down.size(0) == 0:
            return out
        return out + F.linear(F.linear(x.to(down.dtype), down), up).to(out.dtype)


__all__ = ["ContextPromptGenerator", "DialCLIPEncoderLayer", "DialCLIPLayer", "DialCLIPProjectionLayer",
           "extend_attention_mask"]
