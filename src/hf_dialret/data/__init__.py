"""Data for hf_dialret: PhotoChat and MMDialog readers, the synthetic corpus, the unified schema, the collator.

Every reader returns rows of one schema (:mod:`hf_dialret.data.schema`, documented in ``docs/internals.md``), so the
same collator and models serve every source.
"""

from .collator import DialogueRetrievalCollator
from .errors import DataFormatError, ErrorReport, MissingImageError
from .images import DEFAULT_MAX_PIXELS
from .mmdialog import load_mmdialog
from .photochat import load_photochat
from .schema import (
    RESPONSE_MODALITIES,
    normalize_text,
    response_id_hash,
    text_response_id,
    unified_features,
)
from .synthetic import (
    DEFAULT_IMAGE_FRACTION,
    SyntheticDialogue,
    generate_dialogue,
    make_synthetic_corpus,
    synthetic_ground_truth,
    synthetic_vocabulary,
    tokenize_words,
)

__all__ = [
    "DEFAULT_IMAGE_FRACTION",
    "DEFAULT_MAX_PIXELS",
    "RESPONSE_MODALITIES",
    "DataFormatError",
    "DialogueRetrievalCollator",
    "ErrorReport",
    "MissingImageError",
    "SyntheticDialogue",
    "generate_dialogue",
    "load_mmdialog",
    "load_photochat",
    "make_synthetic_corpus",
    "normalize_text",
    "response_id_hash",
    "synthetic_ground_truth",
    "synthetic_vocabulary",
    "text_response_id",
    "tokenize_words",
    "unified_features",
]
