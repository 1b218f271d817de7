"""Configurations of the dual retrievers DR, SDR and MDR.

A flat file importing only transformers and huggingface_hub, so ``save_pretrained`` can ship it as remote code.
"""

from __future__ import annotations

import math
from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

#: The logit scale (log inverse temperature) is clamped at log(100), as in CLIP.
MAX_LOGIT_SCALE = math.log(100.0)
POOLING_MODES = ("cls", "mean", "attention")


def vision_feature_dim(vision_config: PreTrainedConfig) -> int:
    """Width of the pooled features of a vision backbone (ResNet/ConvNext: last stage, ViT/CLIP: hidden size)."""
    hidden_sizes = getattr(vision_config, "hidden_sizes", None)
    if hidden_sizes:
        return int(hidden_sizes[-1])
    hidden_size = getattr(vision_config, "hidden_size", None)
    if hidden_size:
        return int(hidden_size)
    raise ValueError(
        f"Cannot tell the pooled feature width of the vision backbone {type(vision_config).__name__}: its config has "
        "neither `hidden_sizes` nor `hidden_size`. Use a vision backbone with a pooled output (e.g. ResNet, ConvNext, "
        "ViT, CLIP vision)."
    )


@strict
class DialogueRetrievalConfig(PreTrainedConfig):
    r"""
    Shared configuration of the dual retrievers (DR, SDR, MDR). Use one of the three subclasses.

    Args:
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the context text encoder: any `AutoConfig` text encoder (BERT when omitted). Context images
            enter this encoder as visual tokens, so the model must accept `inputs_embeds`.
        vision_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the image backbone (transformers ResNet when omitted): any `AutoModel` vision backbone with a
            pooled output. One backbone encodes both image responses and images inside the context.
        response_text_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of a separate text *response* encoder (e.g. a smaller BERT). When omitted it is a copy of
            `text_config` (same architecture, its own weights). It must share the context encoder's tokenizer.
        share_text_encoder (`bool`, *optional*, defaults to `False`):
            Encode text responses with the context encoder itself (one text encoder fewer: about 110M parameters
            fewer at BERT-base size). The paper keeps them separate, hence the default.
        pooling (`str`, *optional*, defaults to `"cls"`):
            How a text encoder's hidden states become one vector: `"cls"` (first token), `"mean"` (masked mean) or
            `"attention"` (a learned query per head weighs the tokens; starts as the masked mean).
        projection_dim (`int`, *optional*, defaults to 128):
            Width of the shared, L2-normalised retrieval space of contexts and responses.
        intent_hidden_size (`int`, *optional*):
            Hidden width of the intent MLP (DR, SDR); the context encoder's hidden size when omitted.
        classifier_dropout (`float`, *optional*, defaults to 0.1):
            Dropout inside the intent MLP.
        text_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the text-retrieval InfoNCE (DR, SDR).
        image_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the image-retrieval InfoNCE (DR, SDR).
        intent_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the intent cross-entropy (DR, SDR).
        symmetric_loss (`bool`, *optional*, defaults to `False`):
            Average the context → response InfoNCE with the response → context direction (each true response picks
            its own context among the batch's contexts, as in CLIP). The papers train one direction, hence the
            default; from-scratch training learns faster with both (the tiny preset of `hf-dialret train` uses it).
        logit_scale_init_value (`float`, *optional*, defaults to 2.6592):
            Initial log inverse temperature of the cosine similarity (CLIP's log(1/0.07)); clamped at log(100).
        image_token_id (`int`, *optional*):
            Id of the context-image placeholder token (see `DialogueRetrievalProcessor.image_token_id`). Required
            as soon as context images are given.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser of the projections and heads.

    Example:

    ```python
    >>> from hf_dialret import MultimodalDualRetrieverConfig, MultimodalDualRetrieverModel
    >>> config = MultimodalDualRetrieverConfig(projection_dim=256, pooling="mean")
    >>> model = MultimodalDualRetrieverModel(config)  # BERT-base + ResNet-50 sized, random weights
    ```
    """

    model_type = "dialret"
    sub_configs_defaults: ClassVar = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="resnet"),
        "response_text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert", optional=True),
    }
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["logits"]
    #: whether this architecture has an intent head (set by subclasses)
    has_intent_head: ClassVar[bool] = True

    text_config: PreTrainedConfig | dict | None = None
    vision_config: PreTrainedConfig | dict | None = None
    response_text_config: PreTrainedConfig | dict | None = None
    share_text_encoder: bool = False
    pooling: str = "cls"
    projection_dim: int = 128
    intent_hidden_size: int | None = None
    classifier_dropout: float = 0.1
    text_loss_weight: float = 1.0
    image_loss_weight: float = 1.0
    intent_loss_weight: float = 1.0
    symmetric_loss: bool = False
    logit_scale_init_value: float = 2.6592
    image_token_id: int | None = None
    initializer_range: float = 0.02

    @property
    def resolved_response_text_config(self) -> PreTrainedConfig:
        """The response text encoder's config (``text_config`` when no separate one is set)."""
        return self.response_text_config if self.response_text_config is not None else self.text_config

    def validate_architecture(self):
        """Fail early, with a message that says what to change."""
        super().validate_architecture()
        for name in ("projection_dim", "intent_hidden_size", "image_token_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {self.pooling!r}.")
        if self.projection_dim <= 0:
            raise ValueError(f"projection_dim must be a positive integer, got {self.projection_dim}.")
        if self.intent_hidden_size is not None and self.intent_hidden_size <= 0:
            raise ValueError(f"intent_hidden_size must be positive or None, got {self.intent_hidden_size}.")
        if not 0.0 <= self.classifier_dropout < 1.0:
            raise ValueError(f"classifier_dropout must be in [0, 1), got {self.classifier_dropout}.")
        for name in ("text_loss_weight", "image_loss_weight", "intent_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.logit_scale_init_value > MAX_LOGIT_SCALE:
            raise ValueError(
                f"logit_scale_init_value={self.logit_scale_init_value} exceeds the clamp log(100)="
                f"{MAX_LOGIT_SCALE:.4f}; "
                "pass a value <= log(100) (CLIP uses 2.6592 = log(1/0.07))."
            )
        if self.image_token_id is not None and self.image_token_id < 0:
            raise ValueError(f"image_token_id must be a non-negative token id, got {self.image_token_id}.")
        for name in ("text_config", "response_text_config"):
            sub = getattr(self, name)
            if sub is not None and not getattr(sub, "hidden_size", None):
                raise ValueError(
                    f"{name} ({type(sub).__name__}) has no `hidden_size`; use a text encoder config such as BertConfig."
                )
        if self.response_text_config is not None:
            if self.share_text_encoder:
                raise ValueError(
                    "share_text_encoder=True encodes responses with the context encoder, so a separate "
                    "response_text_config cannot be used: drop response_text_config or set share_text_encoder=False."
                )
            ctx_vocab = getattr(self.text_config, "vocab_size", None)
            resp_vocab = getattr(self.response_text_config, "vocab_size", None)
            if ctx_vocab != resp_vocab:
                raise ValueError(
                    f"response_text_config.vocab_size ({resp_vocab}) differs from text_config.vocab_size "
                    f"({ctx_vocab}): "
                    "contexts and responses share one tokenizer, so give both encoders the same vocabulary."
                )
        if getattr(self.vision_config, "model_type", None) in ("clip", "siglip", "blip"):
            raise ValueError(
                f"vision_config is a full {self.vision_config.model_type!r} config; pass its vision part instead "
                "(e.g. CLIPVisionConfig / `clip_vision_model`), a backbone with a pooled image output."
            )
        vision_feature_dim(self.vision_config)


@strict
class DualRetrieverConfig(DialogueRetrievalConfig):
    r"""
    Configuration of [`DualRetrieverModel`] (DR): one context encoder per response modality, a separate intent
    classifier with its own encoder, a text response encoder and an image tower. Arguments: see
    [`DialogueRetrievalConfig`].

    Example:

    ```python
    >>> from hf_dialret import DualRetrieverConfig
    >>> config = DualRetrieverConfig(text_config={"hidden_size": 128, "num_hidden_layers": 2,
    ...     "num_attention_heads": 4, "intermediate_size": 256})
    ```
    """

    model_type = "dialret_dual_retriever"


@strict
class SharedDualRetrieverConfig(DialogueRetrievalConfig):
    r"""
    Configuration of [`SharedDualRetrieverModel`] (SDR): one context encoder shared by text retrieval, image
    retrieval and the intent head (each with its own small projection head). Arguments: see
    [`DialogueRetrievalConfig`].
    """

    model_type = "dialret_shared_dual_retriever"


@strict
class MultimodalDualRetrieverConfig(DialogueRetrievalConfig):
    r"""
    Configuration of [`MultimodalDualRetrieverModel`] (MDR): one context encoder and one query for a joint pool of
    text and image responses; no intent head, so `text_loss_weight`, `image_loss_weight` and `intent_loss_weight`
    are unused (one InfoNCE over the joint pool). Arguments: see [`DialogueRetrievalConfig`].
    """

    model_type = "dialret_multimodal_dual_retriever"
    has_intent_head: ClassVar[bool] = False
