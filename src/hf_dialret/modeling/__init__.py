"""The hf_dialret models: flat folder, single-dot sibling imports only, so ``save_pretrained`` can ship it as remote code."""

from .configuration_dialogue_retrieval import (
    DialogueRetrievalConfig,
    DualRetrieverConfig,
    MultimodalDualRetrieverConfig,
    SharedDualRetrieverConfig,
)
from .modeling_dialogue_retrieval import (
    DialogueRetrievalPreTrainedModel,
    DualRetrieverModel,
    MultimodalDualRetrieverModel,
    SharedDualRetrieverModel,
)
from .modeling_outputs import IMAGE, RESPONSE_MODALITIES, TEXT, DialogueRetrievalOutput
from .processing_dialogue_retrieval import DEFAULT_IMAGE_TOKEN, DialogueRetrievalProcessor, add_image_token
from .retrieval_loss import dialogue_retrieval_loss, modality_aware_scores

__all__ = [
    "DEFAULT_IMAGE_TOKEN",
    "IMAGE",
    "RESPONSE_MODALITIES",
    "TEXT",
    "DialogueRetrievalConfig",
    "DialogueRetrievalOutput",
    "DialogueRetrievalPreTrainedModel",
    "DialogueRetrievalProcessor",
    "DualRetrieverConfig",
    "DualRetrieverModel",
    "MultimodalDualRetrieverConfig",
    "MultimodalDualRetrieverModel",
    "SharedDualRetrieverConfig",
    "SharedDualRetrieverModel",
    "add_image_token",
    "dialogue_retrieval_loss",
    "modality_aware_scores",
]
