"""Configuration of DialCLIP ("DialCLIP: Empowering CLIP as Multi-Modal Dialog Retriever", arXiv 2401.01076).

A flat file with only transformers imports so that ``save_pretrained`` can ship it as remote code. The config holds
the frozen CLIP backbone's own `CLIPConfig`; DialCLIP's trainable parts (domain prompts, the Context Prompt
Generator, the Mixture of Projection experts) are not part of it: they live in the PEFT adapter
(``hf_dialret.prompts.DialCLIPPromptConfig``), so a DialCLIP checkpoint is a CLIP checkpoint plus an adapter.
"""

from __future__ import annotations

from transformers import CLIPConfig, PreTrainedConfig

#: CLIP's text tower has 77 learned position embeddings (OpenAI and open_clip checkpoints alike).
CLIP_MAX_TEXT_POSITIONS = 77


class DialCLIPConfig(PreTrainedConfig):
    r"""Configuration of a [`DialCLIPModel`]: a CLIP backbone used as a multimodal dialogue retriever.

    Args:
        clip_config (`CLIPConfig` or `dict`, *optional*):
            Configuration of the wrapped CLIP model (both towers, projection size, initial logit scale). Defaults to
            `CLIPConfig()` (ViT-B/32 sizes).
        clip_backbone (`str`, *optional*):
            Where the CLIP weights came from: a transformers id or directory (`"openai/clip-vit-base-patch32"`), or
            `"open_clip:<model name>[/<pretrained tag>]"` for a converted open_clip model. Recorded in model cards and
            used as the base model name of DialCLIP prompt adapters.
        max_context_turns (`int`, *optional*, defaults to 8):
            Most recent context turns (text and image) that reach the Context Prompt Generator; older turns are
            dropped by the processor. Bounds the cost of encoding the context with the frozen towers.
    """

    model_type = "dialclip"
    sub_configs_defaults = {"clip_config": CLIPConfig}
    # The Trainer drops these outputs from predictions: a per-batch (B, B) score matrix is meaningless once
    # concatenated over evaluation batches (see docs/internals.md, "Evaluation").
    keys_to_ignore_at_inference = ["logits"]

    clip_config: CLIPConfig | dict | None = None
    clip_backbone: str | None = None
    max_context_turns: int = 8

    def __post_init__(self, **kwargs) -> None:
        super().__post_init__(**kwargs)
        if self.max_context_turns < 0:
            raise ValueError(f"max_context_turns must be >= 0, got {self.max_context_turns}")

    @property
    def projection_dim(self) -> int:
        """Size of the joint CLIP embedding space (the retrieval embedding size)."""
        return self.clip_config.projection_dim

    @property
    def max_text_positions(self) -> int:
        """Position limit of the CLIP text tower (77 for real CLIP checkpoints, smaller in tiny test configs)."""
        return self.clip_config.text_config.max_position_embeddings


__all__ = ["CLIP_MAX_TEXT_POSITIONS", "DialCLIPConfig"]
