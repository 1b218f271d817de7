"""The dual retrievers DR, SDR and MDR as transformers models.

Shapes (B contexts, T text responses, I image responses, R = T + I, D = ``projection_dim``) follow
``docs/internals.md``. A flat file with single-dot sibling imports only, so ``save_pretrained`` ships it as remote code.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init

from .configuration_dialogue_retrieval import (
    MAX_LOGIT_SCALE,
    DialogueRetrievalConfig,
    DualRetrieverConfig,
    MultimodalDualRetrieverConfig,
    SharedDualRetrieverConfig,
)
from .modeling_outputs import IMAGE, RESPONSE_MODALITIES, TEXT, DialogueRetrievalOutput
from .response_batch import in_batch_candidates, resolve_response_modality, to_batch_order
from .retrieval_loss import dialogue_retrieval_loss, modality_aware_scores
from .towers import AttentionPooling, ContextTower, ImageTower, IntentHead, TextTower, load_text_encoder


def _modality_index(modality: str | int) -> int:
    if isinstance(modality, int) and modality in (TEXT, IMAGE):
        return modality
    if modality in RESPONSE_MODALITIES:
        return RESPONSE_MODALITIES.index(modality)
    raise ValueError(f"modality must be one of {RESPONSE_MODALITIES} (or 0/1), got {modality!r}")


class DialogueRetrievalPreTrainedModel(PreTrainedModel):
    """Common surface of DR, SDR and MDR: response towers, logit scale, ``forward``, losses, ``from_backbones``.

    Subclasses build their context side and implement ``_context_forward``.
    """

    config: DialogueRetrievalConfig
    # Set explicitly: under postponed annotations transformers cannot derive config_class from `config: ...`.
    config_class = DialogueRetrievalConfig
    base_model_prefix = "dialret"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    accepts_loss_kwargs = False
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["logits"]
    #: one ranked pool of text and image candidates (MDR) vs. predict the modality, then search its pool (DR, SDR)
    joint_response_pool: ClassVar[bool] = False
    has_intent_head: ClassVar[bool] = True

    def _build_response_side(self, config: DialogueRetrievalConfig) -> None:
        self.image_tower = ImageTower(config.vision_config)
        self.image_projection = nn.Linear(self.image_tower.feature_dim, config.projection_dim, bias=False)
        # With share_text_encoder the context encoder reads the responses too (see _response_text_tower).
        response_config = config.resolved_response_text_config
        self.response_text = None if config.share_text_encoder else TextTower(response_config, config.pooling)
        self.response_text_projection = nn.Linear(
            config.resolved_response_text_config.hidden_size, config.projection_dim, bias=False
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))

    def _new_context_tower(self, config: DialogueRetrievalConfig) -> ContextTower:
        return ContextTower(config.text_config, self.image_tower.feature_dim, config.pooling)

    def _context_towers(self) -> list[ContextTower]:
        raise NotImplementedError

    def _response_text_tower(self) -> TextTower:
        return self.response_text if self.response_text is not None else self._context_towers()[0].text

    def _context_forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, image_features: torch.Tensor | None,
        modalities: tuple[int, ...], with_intent: bool,
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Return the L2-normalised query (B, D) for each of ``modalities`` and the intent logits (B, 2) or None."""
        raise NotImplementedError

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        # Bare Parameters are not covered by the default init; from_pretrained would leave them as garbage.
        if isinstance(module, DialogueRetrievalPreTrainedModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
        if isinstance(module, AttentionPooling):
            init.zeros_(module.query)  # = masked mean pooling at the start

    # ----------------------------------------------------------------------------------------------- encoding
    def _context_image_features(
        self, input_ids: torch.Tensor, context_pixel_values: torch.Tensor | None
    ) -> torch.Tensor | None:
        token_id = self.config.image_token_id
        if context_pixel_values is None:
            if token_id is not None and bool((input_ids == token_id).any()):
                raise ValueError("input_ids contain image placeholders but no context_pixel_values were given.")
            return None
        if token_id is None:
            raise ValueError(
                "context_pixel_values were given but config.image_token_id is not set; set it to the processor's "
                "`image_token_id` (DialogueRetrievalProcessor adds the placeholder token to the tokenizer)."
            )
        placeholders = int((input_ids == token_id).sum())
        if placeholders != context_pixel_values.size(0):
            raise ValueError(
                f"input_ids hold {placeholders} image placeholders (id {token_id}) but context_pixel_values has "
                f"{context_pixel_values.size(0)} images; they must match one to one."
            )
        if placeholders == 0:
            return None
        return self.image_tower(context_pixel_values)

    def _encode_context(self, input_ids, attention_mask, context_pixel_values, modalities, with_intent):
        features = self._context_image_features(input_ids, context_pixel_values)
        return self._context_forward(input_ids, attention_mask, features, modalities, with_intent)

    def encode_context(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        context_pixel_values: torch.Tensor | None = None,
        modality: str | int | None = None,
    ) -> torch.Tensor:
        """Queries (B, 2, D) (index 0 scores text candidates, 1 image candidates), or (B, D) for one ``modality``."""
        if modality is not None:
            queries, _ = self._encode_context(
                input_ids, attention_mask, context_pixel_values, (_modality_index(modality),), False
            )
            return queries[0]
        queries, _ = self._encode_context(input_ids, attention_mask, context_pixel_values, (TEXT, IMAGE), False)
        return torch.stack(queries, dim=1)

    def encode_text_responses(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(T, L) tokens -> (T, D) L2-normalised text response embeddings."""
        pooled = self._response_text_tower()(input_ids=input_ids, attention_mask=attention_mask)
        return F.normalize(self.response_text_projection(pooled), dim=-1)

    def encode_image_responses(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(I, 3, H, W) -> (I, D) L2-normalised image response embeddings."""
        return F.normalize(self.image_projection(self.image_tower(pixel_values)), dim=-1)

    def encode_responses(
        self,
        response_input_ids: torch.Tensor | None = None,
        response_attention_mask: torch.Tensor | None = None,
        response_pixel_values: torch.Tensor | None = None,
        response_modality: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(R, D) response embeddings in batch order (texts then images when ``response_modality`` is None)."""
        parts = []
        if response_input_ids is not None:
            parts.append(self.encode_text_responses(response_input_ids, response_attention_mask))
        if response_pixel_values is not None:
            parts.append(self.encode_image_responses(response_pixel_values))
        if not parts:
            raise ValueError("encode_responses needs response_input_ids and/or response_pixel_values.")
        embeds = torch.cat(parts)
        if response_modality is None or len(parts) == 1:
            return embeds
        return to_batch_order(embeds, response_modality, response_input_ids.size(0))

    def _resolve_modality(self, response_modality, labels, response_input_ids, response_pixel_values) -> torch.Tensor:
        n_text = 0 if response_input_ids is None else response_input_ids.size(0)
        n_image = 0 if response_pixel_values is None else response_pixel_values.size(0)
        ref = response_input_ids if response_input_ids is not None else response_pixel_values
        modality = response_modality if response_modality is not None else labels
        return resolve_response_modality(modality, n_text, n_image, ref.device)

    # ------------------------------------------------------------------------------------------------- losses
    def _loss_and_logits(
        self, context_embeds, response_embeds, response_modality, response_ids=None, intent_logits=None,
        candidate_embeds=None, candidate_modality=None, candidate_ids=None, positive_index=None,
        candidate_contexts=None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if candidate_embeds is None:
            candidate_embeds, candidate_modality, candidate_ids = in_batch_candidates(
                context_embeds, response_embeds, response_modality, response_ids
            )
        cfg = self.config
        return dialogue_retrieval_loss(
            context_embeds, response_modality, candidate_embeds, candidate_modality,
            self.logit_scale.clamp(max=MAX_LOGIT_SCALE), positive_index=positive_index, response_ids=response_ids,
            candidate_ids=candidate_ids, joint_pool=self.joint_response_pool,
            intent_logits=intent_logits if self.has_intent_head else None,
            text_loss_weight=cfg.text_loss_weight, image_loss_weight=cfg.image_loss_weight,
            intent_loss_weight=cfg.intent_loss_weight, symmetric=cfg.symmetric_loss,
            candidate_contexts=candidate_contexts,
        )

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
        candidate_contexts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training loss; the trainer passes candidates gathered from every process (``positive_index`` rows) and,
        with ``config.symmetric_loss``, their contexts (``candidate_contexts``, (N, 2, D))."""
        return self._loss_and_logits(
            context_embeds, response_embeds, response_modality, response_ids, intent_logits,
            candidate_embeds, candidate_modality, candidate_ids, positive_index, candidate_contexts,
        )[0]

    # ------------------------------------------------------------------------------------------------ forward
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
    ) -> DialogueRetrievalOutput:
        """Encode contexts and/or responses; with both and ``return_loss``, also the loss (train and eval mode)."""
        context_embeds = intent_logits = response_embeds = loss = logits = None
        if input_ids is not None:
            queries, intent_logits = self._encode_context(
                input_ids, attention_mask, context_pixel_values, (TEXT, IMAGE), self.has_intent_head
            )
            context_embeds = torch.stack(queries, dim=1)
        if response_input_ids is not None or response_pixel_values is not None:
            modality = self._resolve_modality(response_modality, labels, response_input_ids, response_pixel_values)
            response_embeds = self.encode_responses(
                response_input_ids, response_attention_mask, response_pixel_values, modality
            )
            if context_embeds is not None:
                if return_loss:
                    loss, logits = self._loss_and_logits(
                        context_embeds, response_embeds, modality, response_ids, intent_logits
                    )
                else:
                    scores = modality_aware_scores(context_embeds, response_embeds, modality)
                    logits = scores * self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        return DialogueRetrievalOutput(
            loss=loss, logits=logits, context_embeds=context_embeds, response_embeds=response_embeds,
            intent_logits=intent_logits,
        )

    # ------------------------------------------------------------------------------------------ from backbones
    @classmethod
    def from_backbones(
        cls,
        text: str,
        vision: str,
        response_text: str | None = None,
        image_token: str = "[IMG]",
        **config_kwargs,
    ) -> DialogueRetrievalPreTrainedModel:
        """Build the model with pretrained backbone weights (Hub id or local dir) loaded via ``from_pretrained``.

        ``text`` initialises every context encoder (and the response encoder unless ``response_text`` is given),
        ``vision`` the image tower; projections, heads and the logit scale start fresh. ``image_token_id`` is taken
        from the text tokenizer (adding ``image_token`` as the processor does) unless given in ``config_kwargs``.
        """
        if "image_token_id" not in config_kwargs:
            from .processing_dialogue_retrieval import add_image_token

            try:
                from transformers import AutoTokenizer

                config_kwargs["image_token_id"] = add_image_token(AutoTokenizer.from_pretrained(text), image_token)
            except (OSError, ValueError):  # no tokenizer beside the weights: the user sets image_token_id later
                pass
        config = cls.config_class(
            text_config=AutoConfig.from_pretrained(text),
            vision_config=AutoConfig.from_pretrained(vision),
            response_text_config=AutoConfig.from_pretrained(response_text) if response_text else None,
            **config_kwargs,
        )
        model = cls(config)
        for tower in model._context_towers():
            tower.text.encoder = load_text_encoder(text)
        if model.response_text is not None:
            model.response_text.encoder = load_text_encoder(response_text or text)
        model.image_tower.backbone = AutoModel.from_pretrained(vision, dtype=torch.float32)
        return model


class DualRetrieverModel(DialogueRetrievalPreTrainedModel):
    """DR: a context encoder per response modality, an intent classifier with its own encoder, response towers."""

    config_class = DualRetrieverConfig

    def __init__(self, config: DualRetrieverConfig):
        super().__init__(config)
        self._build_response_side(config)
        self.context_text = self._new_context_tower(config)
        self.context_image = self._new_context_tower(config)
        self.intent_encoder = self._new_context_tower(config)
        hidden = self.context_text.hidden_size
        self.text_query_projection = nn.Linear(hidden, config.projection_dim, bias=False)
        self.image_query_projection = nn.Linear(hidden, config.projection_dim, bias=False)
        self.intent_head = IntentHead(hidden, config.intent_hidden_size or hidden, config.classifier_dropout)
        self.post_init()

    def _context_towers(self) -> list[ContextTower]:
        return [self.context_text, self.context_image, self.intent_encoder]

    def _context_forward(self, input_ids, attention_mask, image_features, modalities, with_intent):
        towers = (self.context_text, self.context_image)
        projections = (self.text_query_projection, self.image_query_projection)
        token_id = self.config.image_token_id
        queries = [
            F.normalize(projections[m](towers[m](input_ids, attention_mask, image_features, token_id)), dim=-1)
            for m in modalities
        ]
        intent = None
        if with_intent:
            intent = self.intent_head(self.intent_encoder(input_ids, attention_mask, image_features, token_id))
        return queries, intent

    def predict_intent(self, input_ids, attention_mask=None, context_pixel_values=None) -> torch.Tensor:
        """(B, 2) logits over the next response's modality (0 text, 1 image)."""
        features = self._context_image_features(input_ids, context_pixel_values)
        return self.intent_head(self.intent_encoder(input_ids, attention_mask, features, self.config.image_token_id))


class SharedDualRetrieverModel(DialogueRetrievalPreTrainedModel):
    """SDR: one context encoder shared by text retrieval, image retrieval and the intent head."""

    config_class = SharedDualRetrieverConfig

    def __init__(self, config: SharedDualRetrieverConfig):
        super().__init__(config)
        self._build_response_side(config)
        self.context = self._new_context_tower(config)
        hidden = self.context.hidden_size
        self.text_query_projection = nn.Linear(hidden, config.projection_dim, bias=False)
        self.image_query_projection = nn.Linear(hidden, config.projection_dim, bias=False)
        self.intent_head = IntentHead(hidden, config.intent_hidden_size or hidden, config.classifier_dropout)
        self.post_init()

    def _context_towers(self) -> list[ContextTower]:
        return [self.context]

    def _context_forward(self, input_ids, attention_mask, image_features, modalities, with_intent):
        pooled = self.context(input_ids, attention_mask, image_features, self.config.image_token_id)
        projections = (self.text_query_projection, self.image_query_projection)
        queries = [F.normalize(projections[m](pooled), dim=-1) for m in modalities]
        return queries, (self.intent_head(pooled) if with_intent else None)

    def predict_intent(self, input_ids, attention_mask=None, context_pixel_values=None) -> torch.Tensor:
        """(B, 2) logits over the next response's modality (0 text, 1 image)."""
        return self._encode_context(input_ids, attention_mask, context_pixel_values, (), True)[1]


class MultimodalDualRetrieverModel(DialogueRetrievalPreTrainedModel):
    """MDR: one context encoder and one query against a joint pool of text and image responses; no intent."""

    config_class = MultimodalDualRetrieverConfig
    joint_response_pool: ClassVar[bool] = True
    has_intent_head: ClassVar[bool] = False

    def __init__(self, config: MultimodalDualRetrieverConfig):
        super().__init__(config)
        self._build_response_side(config)
        self.context = self._new_context_tower(config)
        self.query_projection = nn.Linear(self.context.hidden_size, config.projection_dim, bias=False)
        self.post_init()

    def _context_towers(self) -> list[ContextTower]:
        return [self.context]

    def _context_forward(self, input_ids, attention_mask, image_features, modalities, with_intent):
        pooled = self.context(input_ids, attention_mask, image_features, self.config.image_token_id)
        query = F.normalize(self.query_projection(pooled), dim=-1)
        return [query for _ in modalities], None  # one query space: the same vector scores both modalities


__all__ = [
    "DialogueRetrievalPreTrainedModel",
    "DualRetrieverModel",
    "SharedDualRetrieverModel",
    "MultimodalDualRetrieverModel",
]
