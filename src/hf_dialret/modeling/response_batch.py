"""Bookkeeping of a response batch shared by every retriever: which rows are texts and which are images.

Responses arrive as two stacks (``response_input_ids`` for the texts, ``response_pixel_values`` for the images) and
``response_modality`` says, row by row of the batch, which stack each response comes from. A flat file with no
package imports, so that it ships with the models as remote code.
"""

from __future__ import annotations

import torch


def resolve_response_modality(
    response_modality: torch.Tensor | None, n_text: int, n_image: int, device: torch.device
) -> torch.Tensor:
    """``response_modality`` checked against the stacks, or texts-then-images when it is not given."""
    if response_modality is None:
        return torch.cat([torch.zeros(n_text), torch.ones(n_image)]).long().to(device)
    modality = response_modality.long()
    n_image_given = int(modality.sum())
    if n_image_given != n_image or modality.numel() - n_image_given != n_text:
        raise ValueError(
            f"response_modality marks {modality.numel() - n_image_given} text and {n_image_given} image responses, "
            f"but {n_text} texts and {n_image} images were given."
        )
    return modality


def to_batch_order(embeds: torch.Tensor, response_modality: torch.Tensor, n_text: int) -> torch.Tensor:
    """Rows of ``embeds`` (all texts, then all images) rearranged into batch order with one gather: batch row j is
    the k-th text (row k) or the k-th image (row ``n_text + k``)."""
    is_image = response_modality.bool()
    image_rank = torch.cumsum(is_image.long(), 0) - 1
    text_rank = torch.cumsum((~is_image).long(), 0) - 1
    return embeds[torch.where(is_image, n_text + image_rank, text_rank)]


def in_batch_candidates(
    context_embeds: torch.Tensor,
    response_embeds: torch.Tensor,
    response_modality: torch.Tensor,
    response_ids: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The batch's own responses as the candidate pool of the in-batch loss (context i's positive is response i)."""
    if response_embeds.size(0) != context_embeds.size(0):
        raise ValueError(
            f"The in-batch loss pairs context i with response i, but got {context_embeds.size(0)} contexts "
            f"and {response_embeds.size(0)} responses; pass one response per context or return_loss=False."
        )
    return response_embeds, response_modality, response_ids
