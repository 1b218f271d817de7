"""hf_dialret: multimodal dialogue response retrieval for the Hugging Face ecosystem.

Importing the package registers its configs, models and processor with the transformers Auto classes, and marks
them for ``register_for_auto_class`` so that ``save_pretrained`` also writes the remote code
(``AutoModel.from_pretrained(dir, trust_remote_code=True)`` then works without hf_dialret installed).
"""

from transformers import AutoConfig, AutoModel, AutoProcessor

from .modeling import (
    IMAGE,
    RESPONSE_MODALITIES,
    TEXT,
    DialogueRetrievalConfig,
    DialogueRetrievalOutput,
    DialogueRetrievalPreTrainedModel,
    DialogueRetrievalProcessor,
    DualRetrieverConfig,
    DualRetrieverModel,
    MultimodalDualRetrieverConfig,
    MultimodalDualRetrieverModel,
    SharedDualRetrieverConfig,
    SharedDualRetrieverModel,
    dialogue_retrieval_loss,
)
from .parameters import count_parameters

__version__ = "0.1.0"

#: (config class, model class) of every architecture registered with AutoConfig / AutoModel.
ARCHITECTURES = {
    "dr": (DualRetrieverConfig, DualRetrieverModel),
    "sdr": (SharedDualRetrieverConfig, SharedDualRetrieverModel),
    "mdr": (MultimodalDualRetrieverConfig, MultimodalDualRetrieverModel),
}


def _register(config_class, model_class) -> None:
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    AutoProcessor.register(config_class, DialogueRetrievalProcessor, exist_ok=True)
    config_class.register_for_auto_class()
    model_class.register_for_auto_class("AutoModel")


for _config_class, _model_class in ARCHITECTURES.values():
    _register(_config_class, _model_class)
DialogueRetrievalProcessor.register_for_auto_class()

__all__ = [
    "ARCHITECTURES",
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
    "count_parameters",
    "dialogue_retrieval_loss",
]

from .modeling.configuration_dialclip import DialCLIPConfig  # noqa: E402
from .modeling.modeling_dialclip import DialCLIPModel  # noqa: E402
from .modeling.processing_dialclip import DialCLIPProcessor  # noqa: E402
from .prompts import (  # noqa: E402  (importing hf_dialret.prompts registers the DIALCLIP PEFT type)
    DialCLIPPromptConfig,
    build_dialclip_for_training,
    load_dialclip,
    save_tiny_clip,
)
from .retrieval.pipeline import register_pipeline as _register_pipeline  # noqa: E402

# DialCLIP has its own processor (CLIP tokenizer, context turns for the prompt generator), hence its own block.
AutoConfig.register(DialCLIPConfig.model_type, DialCLIPConfig, exist_ok=True)
AutoModel.register(DialCLIPConfig, DialCLIPModel, exist_ok=True)
AutoProcessor.register(DialCLIPConfig, DialCLIPProcessor, exist_ok=True)
DialCLIPConfig.register_for_auto_class()
DialCLIPModel.register_for_auto_class("AutoModel")
DialCLIPProcessor.register_for_auto_class()
_register_pipeline()  # the "dialogue-response-retrieval" pipeline task

__all__ += [
    "DialCLIPConfig",
    "DialCLIPModel",
    "DialCLIPProcessor",
    "DialCLIPPromptConfig",
    "build_dialclip_for_training",
    "load_dialclip",
    "save_tiny_clip",
]
