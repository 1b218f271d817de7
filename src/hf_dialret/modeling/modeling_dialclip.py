"""DialCLIP: a frozen CLIP backbone as a multimodal dialogue retriever (arXiv 2401.01076).

Flat, remote-code-safe file (torch, transformers and single-dot siblings only). Without an adapter the model is
plain CLIP used for retrieval: the query is the current turn's text, responses are CLIP text/image embeddings.
DialCLIP's trainable parts live in the PEFT adapter (``hf_dialret.prompts``), which wraps the CLIP encoder layers
and projections. This model tells those wrappers what each call is for through a small per-call *state* (the
`dialclip_state` attribute set on the encoder layers and projections around each tower call): whether the text
tower is encoding the query (domain + context prompts), a response (domain prompts) or a context turn (frozen CLIP,
no prompts), which projection expert applies, and a lazily evaluated function returning the context features for
the Context Prompt Generator. Plain `nn.Linear`/`CLIPEncoderLayer` modules ignore the attribute.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel, PreTrainedConfig, PreTrainedModel

from .configuration_dialclip import DialCLIPConfig
from .modeling_outputs import IMAGE, TEXT, DialogueRetrievalOutput
from .response_batch import in_batch_candidates, resolve_response_modality, to_batch_order
from .retrieval_loss import dialogue_retrieval_loss, modality_aware_scores

MAX_LOGIT_SCALE = math.log(100.0)
STATE_ATTR = "dialclip_state"
OPEN_CLIP_SCHEME = "open_clip:"
ContextFeatures = tuple[torch.Tensor, torch.Tensor] | None  # (B, T, D) L2-normalised features, (B, T) bool mask


def _parse_open_clip(name: str) -> tuple[str, str | None]:
    """``"open_clip:<model>[/<pretrained>]"`` → (model, pretrained); hf-hub:/local-dir: models carry their weights."""
    spec = name[len(OPEN_CLIP_SCHEME):]
    if spec.startswith(("hf-hub:", "local-dir:")):
        return spec, None
    model_name, _, pretrained = spec.partition("/")
    return model_name, pretrained or None


@contextlib.contextmanager
def _state(modules: Iterable[nn.Module], state: dict) -> Iterator[None]:
    """Expose ``state`` to adapter wrappers for one tower call; restores the previous state (calls may nest)."""
    modules = list(modules)
    saved = [m.__dict__.get(STATE_ATTR) for m in modules]
    for m in modules:
        m.__dict__[STATE_ATTR] = state  # __dict__: a plain attribute, never registered as a submodule/buffer
    try:
        yield
    finally:
        for m, s in zip(modules, saved):
            m.__dict__[STATE_ATTR] = s


class DialCLIPPreTrainedModel(PreTrainedModel):
    config_class = DialCLIPConfig  # explicit: with postponed annotations `config: DialCLIPConfig` is only a string
    base_model_prefix = "dialclip"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["CLIPTextEmbeddings", "CLIPEncoderLayer", "CLIPVisionEmbeddings"]
    _supports_sdpa = True
    accepts_loss_kwargs = False  # contrastive loss: the Trainer must not rescale it by token counts


class DialCLIPModel(DialCLIPPreTrainedModel):
    """CLIP as a dialogue retriever, following the retriever contract of ``docs/internals.md``.

    Inputs beyond the contract (produced by `DialCLIPProcessor`): ``input_ids``/``attention_mask`` hold the
    *current turn* (the query text, at most 77 tokens), and the earlier turns come as ``context_input_ids``,
    ``context_attention_mask`` (Nt, L) with ``context_text_batch_index`` (Nt,) and ``context_pixel_values``
    (Ni, 3, H, W) with ``context_image_batch_index`` (Ni,). Only the Context Prompt Generator reads them, so plain
    CLIP (no adapter) never encodes the context.
    """

    joint_response_pool: ClassVar[bool] = True

    def __init__(self, config: DialCLIPConfig):
        super().__init__(config)
        # from_pretrained(dtype=...) sets the dtype one config level down (clip_config) only; CLIP builds its towers
        # from text_config / vision_config, which would otherwise stay float32 beside bf16 projections.
        for tower_config in (config.clip_config.text_config, config.clip_config.vision_config):
            tower_config.dtype = config.clip_config.dtype
        self.clip = CLIPModel(config.clip_config)
        self.post_init()

    # -------------------------------------------------------------------------------------------- backbones
    @classmethod
    def from_clip(cls, clip_name_or_path: str, *, max_context_turns: int = 8, **kwargs) -> DialCLIPModel:
        """Wrap a transformers `CLIPModel` checkpoint (hub id or local directory); loads in float32 by default."""
        kwargs.setdefault("dtype", torch.float32)
        clip = CLIPModel.from_pretrained(clip_name_or_path, **kwargs)
        return cls.from_clip_model(clip, clip_backbone=str(clip_name_or_path), max_context_turns=max_context_turns)

    @classmethod
    def from_clip_model(cls, clip: CLIPModel, *, clip_backbone: str | None = None,
                        max_context_turns: int = 8) -> DialCLIPModel:
        """Wrap an in-memory `CLIPModel` (its weights are used as they are, not copied)."""
        config = DialCLIPConfig(clip_config=clip.config, clip_backbone=clip_backbone,
                                max_context_turns=max_context_turns)
        with torch.device("meta"):  # skip a throw-away random init of a full CLIP
            model = cls(config)
        model.clip = clip
        if clip_backbone:
            # PEFT records this as the adapter's base_model_name_or_path, so adapters name their base CLIP.
            model.config.name_or_path = model.name_or_path = clip_backbone
        return model

    @classmethod
    def from_open_clip(cls, model_name: str, pretrained: str | None = None, *, max_context_turns: int = 8,
                       **create_kwargs) -> DialCLIPModel:
        """Build an open_clip model and convert it to a transformers `CLIPModel` (same outputs, one interface).

        Only open_clip's standard ViT `CLIP` class is supported (argmax text pooling, class-token image pooling);
        anything else raises a ``ValueError`` naming the weights that have no CLIP counterpart. Use the OpenAI CLIP
        tokenizer (``DialCLIPProcessor`` over ``openai/clip-vit-base-patch32``'s tokenizer) with these models.
        """
        try:
            import open_clip
        except ImportError as err:  # pragma: no cover - open_clip_torch is an install requirement
            raise ImportError("DialCLIPModel.from_open_clip needs open_clip: pip install open_clip_torch") from err
        oc_model = open_clip.create_model(model_name, pretrained=pretrained, **create_kwargs)
        from .convert_dialclip_open_clip import open_clip_to_clip  # lazy: only open_clip users need it

        clip = open_clip_to_clip(oc_model)
        backbone = f"{OPEN_CLIP_SCHEME}{model_name}" + (f"/{pretrained}" if pretrained else "")
        return cls.from_clip_model(clip, clip_backbone=backbone, max_context_turns=max_context_turns)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs) -> DialCLIPModel:
        """Load a DialCLIP checkpoint, or wrap a plain CLIP checkpoint (what a DialCLIP adapter names as its base,
        so ``AutoPeftModel`` and ``PeftModel.from_pretrained(DialCLIPModel.from_pretrained(base), ...)`` work)."""
        name = str(pretrained_model_name_or_path)
        if name.startswith(OPEN_CLIP_SCHEME):  # "open_clip:ViT-B-32/openai", as from_open_clip records it
            model_name, pretrained = _parse_open_clip(name)
            return cls.from_open_clip(model_name, pretrained)
        if kwargs.get("config") is None and pretrained_model_name_or_path is not None:
            hub_keys = ("revision", "token", "cache_dir", "local_files_only", "subfolder")
            hub = {k: kwargs[k] for k in hub_keys if k in kwargs}
            config_dict, _ = PreTrainedConfig.get_config_dict(pretrained_model_name_or_path, **hub)
            if config_dict.get("model_type") == "clip":
                return cls.from_clip(pretrained_model_name_or_path, **kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    # ------------------------------------------------------------------------------------------------ towers
    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's own learnable log inverse temperature (frozen under a DialCLIP adapter)."""
        return self.clip.logit_scale

    def _check_text_length(self, input_ids: torch.Tensor, name: str) -> None:
        limit = self.config.max_text_positions
        if input_ids.size(-1) > limit:
            raise ValueError(
                f"{name} has {input_ids.size(-1)} positions but the CLIP text tower has only {limit}; truncate the "
                f"text to {limit} tokens (DialCLIPProcessor does). DialCLIP's domain and context prompts are extra "
                "hidden-state tokens without position embeddings, so they never use any of these positions."
            )

    def _tower(self, tower: str, state: dict, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled (pre-projection) output of the text or vision tower, with ``state`` shown to its layers."""
        model = self.clip.text_model if tower == "text" else self.clip.vision_model
        with _state(model.encoder.layers, state):
            return model(**inputs).pooler_output

    def _project(self, tower: str, pooled: torch.Tensor, expert: str | None) -> torch.Tensor:
        """CLIP projection (through the given Mixture-of-Projection expert when an adapter has one), normalised."""
        projection = self.clip.text_projection if tower == "text" else self.clip.visual_projection
        with _state([projection], {"expert": expert}):
            return F.normalize(projection(pooled), dim=-1)

    @torch.no_grad()
    def _encode_context_turns(
        self, batch_size: int, context_input_ids: torch.Tensor | None, context_attention_mask: torch.Tensor | None,
        context_text_batch_index: torch.Tensor | None, context_pixel_values: torch.Tensor | None,
        context_image_batch_index: torch.Tensor | None,
    ) -> ContextFeatures:
        """Context turns through the frozen, unprompted CLIP towers → padded (B, T, D) features and (B, T) mask."""
        feats, index = [], []
        frozen = {"role": "context"}
        if context_input_ids is not None and context_input_ids.size(0) > 0:
            if context_text_batch_index is None:
                raise ValueError("context_input_ids needs context_text_batch_index (the dialogue of each turn row)")
            self._check_text_length(context_input_ids, "context_input_ids")
            pooled = self._tower("text", frozen, input_ids=context_input_ids, attention_mask=context_attention_mask)
            feats.append(self._project("text", pooled, None))
            index.append(context_text_batch_index)
        if context_pixel_values is not None and context_pixel_values.size(0) > 0:
            if context_image_batch_index is None:
                raise ValueError(
                    "DialCLIP reads context_pixel_values only with context_image_batch_index (the dialogue of each "
                    "image); build the batch with DialCLIPProcessor."
                )
            pooled = self._tower("vision", frozen, pixel_values=context_pixel_values.to(self.dtype))
            feats.append(self._project("vision", pooled, None))
            index.append(context_image_batch_index)
        if not feats:
            return None
        features, batch_index = torch.cat(feats), torch.cat(index).long().to(feats[0].device)
        if bool((batch_index < 0).any()) or bool((batch_index >= batch_size).any()):
            raise ValueError(f"context batch indices must lie in [0, {batch_size}), got {batch_index.tolist()}")
        counts = torch.bincount(batch_index, minlength=batch_size)
        order = torch.argsort(batch_index, stable=True)
        rows = batch_index[order]
        slots = torch.arange(rows.numel(), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
        padded = features.new_zeros(batch_size, int(counts.max()), features.size(-1))
        mask = torch.zeros(padded.shape[:2], dtype=torch.bool, device=padded.device)
        padded[rows, slots] = features[order]
        mask[rows, slots] = True
        return padded, mask

    # --------------------------------------------------------------------------------------------- contract
    def encode_context(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        context_pixel_values: torch.Tensor | None = None,
        modality: str | None = None,
        context_input_ids: torch.Tensor | None = None,
        context_attention_mask: torch.Tensor | None = None,
        context_text_batch_index: torch.Tensor | None = None,
        context_image_batch_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Query embeddings (B, 2, D), one per response modality (each through its own projection expert); with
        ``modality="text"|"image"`` only that query, (B, D)."""
        self._check_text_length(input_ids, "input_ids")
        cache: dict[str, ContextFeatures] = {}

        def context_features() -> ContextFeatures:  # lazy: only a Context Prompt Generator asks for it
            if "value" not in cache:
                cache["value"] = self._encode_context_turns(
                    input_ids.size(0), context_input_ids, context_attention_mask, context_text_batch_index,
                    context_pixel_values, context_image_batch_index,
                )
            return cache["value"]

        state = {"role": "query", "context_features": context_features}
        pooled = self._tower("text", state, input_ids=input_ids, attention_mask=attention_mask)
        experts = ("text", "image") if modality is None else (modality,)
        queries = [self._project("text", pooled, expert) for expert in experts]
        return queries[0] if modality is not None else torch.stack(queries, dim=1)

    def encode_responses(
        self,
        response_input_ids: torch.Tensor | None = None,
        response_attention_mask: torch.Tensor | None = None,
        response_pixel_values: torch.Tensor | None = None,
        response_modality: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Response embeddings (R, D) in batch order (texts then images when ``response_modality`` is None); they
        never depend on the query, so a candidate pool is encoded once."""
        modality = self._resolve_modality(response_modality, response_input_ids, response_pixel_values)
        role = {"role": "response"}
        parts = []
        if response_input_ids is not None and response_input_ids.size(0) > 0:
            self._check_text_length(response_input_ids, "response_input_ids")
            pooled = self._tower("text", role, input_ids=response_input_ids, attention_mask=response_attention_mask)
            parts.append(self._project("text", pooled, "text"))
        if response_pixel_values is not None and response_pixel_values.size(0) > 0:
            pooled = self._tower("vision", role, pixel_values=response_pixel_values.to(self.dtype))
            parts.append(self._project("vision", pooled, "image"))
        n_text = 0 if response_input_ids is None else response_input_ids.size(0)
        return to_batch_order(torch.cat(parts), modality, n_text)

    @staticmethod
    def _resolve_modality(response_modality, response_input_ids, response_pixel_values) -> torch.Tensor:
        n_text = 0 if response_input_ids is None else response_input_ids.size(0)
        n_image = 0 if response_pixel_values is None else response_pixel_values.size(0)
        if n_text + n_image == 0:
            raise ValueError("encode_responses needs response_input_ids and/or response_pixel_values")
        ref = response_input_ids if response_input_ids is not None else response_pixel_values
        return resolve_response_modality(response_modality, n_text, n_image, ref.device)

    def compute_loss(
        self,
        context_embeds: torch.Tensor,
        response_embeds: torch.Tensor | None,
        response_modality: torch.Tensor,
        response_ids: torch.Tensor | None = None,
        intent_logits: torch.Tensor | None = None,
        candidate_embeds: torch.Tensor | None = None,
        candidate_modality: torch.Tensor | None = None,
        candidate_ids: torch.Tensor | None = None,
        positive_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """InfoNCE over the joint text+image pool (DialCLIP has no intent head; ``intent_logits`` is ignored)."""
        return self._loss_and_logits(context_embeds, response_embeds, response_modality, response_ids,
                                     candidate_embeds, candidate_modality, candidate_ids, positive_index)[0]

    def _loss_and_logits(self, context_embeds, response_embeds, response_modality, response_ids=None,
                         candidate_embeds=None, candidate_modality=None, candidate_ids=None, positive_index=None):
        if candidate_embeds is None:
            candidate_embeds, candidate_modality, candidate_ids = in_batch_candidates(
                context_embeds, response_embeds, response_modality, response_ids
            )
        return dialogue_retrieval_loss(
            context_embeds, response_modality, candidate_embeds, candidate_modality,
            self.logit_scale.clamp(max=MAX_LOGIT_SCALE), positive_index=positive_index, response_ids=response_ids,
            candidate_ids=candidate_ids, joint_pool=True,
        )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        context_pixel_values: torch.Tensor | None = None,
        response_input_ids: torch.Tensor | None = None,
        response_attention_mask: torch.Tensor | None = None,
        response_pixel_values: torch.Tensor | None = None,
        response_modality: torch.Tensor | None = None,
        response_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_loss: bool = True,
        context_input_ids: torch.Tensor | None = None,
        context_attention_mask: torch.Tensor | None = None,
        context_text_batch_index: torch.Tensor | None = None,
        context_image_batch_index: torch.Tensor | None = None,
    ) -> DialogueRetrievalOutput:
        """Encode queries and/or responses; with both and ``return_loss``, also the loss (train and eval mode).
        ``labels`` (the intent label = response modality) is accepted for the Trainer and otherwise unused."""
        context_embeds = response_embeds = loss = logits = None
        if input_ids is not None:
            context_embeds = self.encode_context(
                input_ids, attention_mask, context_pixel_values, None, context_input_ids, context_attention_mask,
                context_text_batch_index, context_image_batch_index,
            )
        if response_input_ids is not None or response_pixel_values is not None:
            modality = self._resolve_modality(response_modality, response_input_ids, response_pixel_values)
            response_embeds = self.encode_responses(
                response_input_ids, response_attention_mask, response_pixel_values, modality
            )
            if context_embeds is not None:
                if return_loss:
                    loss, logits = self._loss_and_logits(context_embeds, response_embeds, modality, response_ids)
                else:
                    scores = modality_aware_scores(context_embeds, response_embeds, modality)
                    logits = scores * self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        return DialogueRetrievalOutput(
            loss=loss, logits=logits, context_embeds=context_embeds, response_embeds=response_embeds
        )


__all__ = ["DialCLIPModel", "DialCLIPPreTrainedModel"]
