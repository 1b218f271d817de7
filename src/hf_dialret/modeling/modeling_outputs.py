"""Output dataclass shared by every hf_dialret retriever.

Kept in its own flat file with no package imports so that ``save_pretrained`` can ship it as remote code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

#: Response modalities, in the order used by every tensor with a modality axis (index 0 = text, 1 = image).
RESPONSE_MODALITIES = ("text", "image")
TEXT, IMAGE = 0, 1


@dataclass
class DialogueRetrievalOutput(ModelOutput):
    """Output of a dialogue retriever's ``forward``.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Training objective (weighted sum of the retrieval InfoNCE terms and, where the model has an intent head,
            the intent cross-entropy). Returned whenever responses are given and ``return_loss=True``, in train and
            eval mode alike.
        logits (`torch.FloatTensor` of shape `(batch_size, batch_size)`, *optional*):
            Scaled similarity of every context with every in-batch response; entry `(i, j)` uses the context query
            built for the modality of response `j`.
        context_embeds (`torch.FloatTensor` of shape `(batch_size, 2, projection_dim)`, *optional*):
            L2-normalised query embeddings, one per response modality (`[:, 0]` scores text candidates, `[:, 1]`
            image candidates). Models with a single query space (MDR) return the same vector twice.
        response_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`, *optional*):
            L2-normalised response embeddings, in batch order whatever their modality.
        intent_logits (`torch.FloatTensor` of shape `(batch_size, 2)`, *optional*):
            Next-response modality logits (text, image) for models with an intent head (DR, SDR).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    context_embeds: torch.FloatTensor | None = None
    response_embeds: torch.FloatTensor | None = None
    intent_logits: torch.FloatTensor | None = None
