"""Building blocks shared by the dual retrievers: text, image and context towers, and the intent head.

A flat file (torch + transformers only) so that ``save_pretrained`` ships it with the models as remote code.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedConfig, PreTrainedModel

from .configuration_dialogue_retrieval import POOLING_MODES, vision_feature_dim


def build_text_encoder(config: PreTrainedConfig) -> PreTrainedModel:
    """An ``AutoModel`` text encoder without its pooler (we pool ourselves, the pooler would be dead weight)."""
    try:
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:  # encoders without a pooler option (e.g. DistilBERT)
        return AutoModel.from_config(config)


def load_text_encoder(path: str) -> PreTrainedModel:
    """A pretrained text encoder (Hub id or directory) in fp32, without its pooler where the model has one."""
    try:
        return AutoModel.from_pretrained(path, dtype=torch.float32, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_pretrained(path, dtype=torch.float32)


def pool_hidden_states(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """(B, L, H) -> (B, H) by the first token (``"cls"``) or the attention-masked mean (``"mean"``); ``"attention"``
    pooling has weights and lives in :class:`AttentionPooling`."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        if attention_mask is None:
            return hidden.mean(1)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if pooling == "attention":
        raise ValueError("attention pooling has weights: use TextTower(config, 'attention') or AttentionPooling")
    raise ValueError(f"pooling must be one of {POOLING_MODES}, got {pooling!r}")


class AttentionPooling(nn.Module):
    """Multi-head attention pooling with one learned query per head (as SigLIP's MAP head, without its MLP).

    ``(B, L, H)`` hidden states -> ``(B, H)``: each head takes a softmax-weighted mean of its slice of the tokens, the
    weights given by the head's query. The query starts at zero, i.e. exactly masked mean pooling, so it trains from
    scratch as mean pooling does, then learns which tokens to read: a dialogue query needs the turns about the
    *referred* thing, not the average of everything said.
    """

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"attention pooling: hidden size {hidden_size} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.query = nn.Parameter(torch.zeros(num_heads, hidden_size // num_heads))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, width = hidden.shape
        heads = hidden.view(batch, length, self.num_heads, width // self.num_heads)
        scores = torch.einsum("blnd,nd->bln", heads, self.query.to(hidden.dtype)) / heads.size(-1) ** 0.5
        if attention_mask is not None:
            scores = scores.masked_fill(~attention_mask.bool().unsqueeze(-1), torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=1)
        return torch.einsum("bln,blnd->bnd", weights, heads).reshape(batch, width)


class TextTower(nn.Module):
    """Text encoder + pooling: ``(B, L)`` token ids (or ``(B, L, H)`` input embeddings) -> ``(B, H)``."""

    def __init__(self, config: PreTrainedConfig, pooling: str):
        super().__init__()
        self.encoder = build_text_encoder(config)
        self.pooling = pooling
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {pooling!r}")
        self.attention_pool = (
            AttentionPooling(config.hidden_size, getattr(config, "num_attention_heads", 1))
            if pooling == "attention" else None
        )
        if "inputs_embeds" not in inspect.signature(self.encoder.forward).parameters:
            raise ValueError(
                f"The text encoder {type(self.encoder).__name__} does not accept `inputs_embeds`, which context images "
                "need (they enter as visual tokens); pick a text encoder such as BERT, RoBERTa or DistilBERT."
            )

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds)
        if self.attention_pool is not None:
            return self.attention_pool(out.last_hidden_state, attention_mask)
        return pool_hidden_states(out.last_hidden_state, attention_mask, self.pooling)


class ImageTower(nn.Module):
    """Any ``AutoModel`` vision backbone with a pooled output: ``(N, 3, H, W)`` -> ``(N, F)`` features."""

    def __init__(self, config: PreTrainedConfig):
        super().__init__()
        self.backbone = AutoModel.from_config(config)
        self.feature_dim = vision_feature_dim(config)
        name = type(self.backbone).__name__
        if getattr(self.backbone, "main_input_name", None) != "pixel_values":
            raise ValueError(
                f"vision_config builds {name}, which does not take `pixel_values`; pass a vision backbone config "
                "(e.g. ResNetConfig, ConvNextConfig, ViTConfig, CLIPVisionConfig)."
            )
        returns = str(inspect.signature(type(self.backbone).forward).return_annotation)
        if "Pooling" not in returns and "pooler" not in returns.lower():
            raise ValueError(
                f"The vision backbone {name} has no pooled output (it returns {returns}); the image tower needs "
                "`pooler_output`. Use a backbone that pools (ResNet, ConvNext, ViT with its pooler, CLIP vision)."
            )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # Channels-last input puts oneDNN/cuDNN convolutions (and the activations after them) on their NHWC kernels:
        # measured 1.35x on the tiny ResNet's forward + backward on CPU, and the bench's what-if for ResNet-50 in
        # bf16. Same values, another memory layout.
        # The processor gives float32 pixels; a backbone loaded in another dtype (dtype=torch.bfloat16) needs its own.
        dtype = next(self.backbone.parameters()).dtype
        pixel_values = pixel_values.to(dtype=dtype, memory_format=torch.channels_last)
        pooled = self.backbone(pixel_values=pixel_values).pooler_output
        if pooled is None:
            raise ValueError(
                f"The vision backbone {type(self.backbone).__name__} returned no pooler_output; enable its pooling "
                "layer (e.g. ViT: add_pooling_layer=True) or use a backbone that pools."
            )
        # ResNet/ConvNext pool to (N, C, 1, 1); transformer backbones to (N, C).
        pooled = pooled.flatten(1)
        if pooled.size(1) != self.feature_dim:
            raise ValueError(
                f"The vision backbone pooled to width {pooled.size(1)}, but its config implies {self.feature_dim}."
            )
        return pooled


class ContextTower(nn.Module):
    """The flattened dialogue through a text encoder, with each context image as one visual token.

    Every ``image_token_id`` placeholder's input embedding is replaced by the image tower's features of that
    image, mapped to the text hidden size by ``visual_projection``. The replacement is one ``masked_scatter``
    (placeholders in row-major order = images in ``context_pixel_values`` order), so no Python loop over examples.
    """

    def __init__(self, text_config: PreTrainedConfig, vision_dim: int, pooling: str):
        super().__init__()
        self.text = TextTower(text_config, pooling)
        self.visual_projection = nn.Linear(vision_dim, self.text.hidden_size)

    @property
    def hidden_size(self) -> int:
        return self.text.hidden_size

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        image_features: torch.Tensor | None = None,
        image_token_id: int | None = None,
    ) -> torch.Tensor:
        """``image_features`` (Ni, F) from the image tower, one per placeholder. Returns pooled (B, H)."""
        if image_features is None:
            return self.text(input_ids=input_ids, attention_mask=attention_mask)
        is_image = input_ids == image_token_id
        # The placeholder id may lie outside the encoder's vocabulary (a token added to the tokenizer without
        # resizing the embeddings); its embedding is overwritten anyway, so look up a harmless id instead.
        safe_ids = input_ids.masked_fill(is_image, 0)
        embeds = self.text.encoder.get_input_embeddings()(safe_ids)
        visual = self.visual_projection(image_features).to(embeds.dtype)
        embeds = embeds.masked_scatter(is_image.unsqueeze(-1), visual)
        return self.text(attention_mask=attention_mask, inputs_embeds=embeds)


class IntentHead(nn.Module):
    """MLP on the pooled context -> logits over the response modalities (0 text, 1 image)."""

    def __init__(self, hidden_size: int, intermediate_size: int, dropout: float, num_modalities: int = 2):
        super().__init__()
        self.dense = nn.Linear(hidden_size, intermediate_size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(intermediate_size, num_modalities)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(F.gelu(self.dense(pooled))))
