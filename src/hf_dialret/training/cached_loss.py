"""GradCache-style cached contrastive training step: a large batch of in-batch negatives in bounded memory.

In-batch-negative InfoNCE needs every embedding of the batch at once, but the activations that backprop needs
grow with the batch. :func:`cached_training_step` (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size
under Memory Limited Setup"; sentence-transformers' ``CachedMultipleNegativesRankingLoss``) splits the step in three:

1. **embed** the batch chunk by chunk without a graph (only the embeddings are kept: ``(B, 2, D) + (B, D)``);
2. **loss** on the full batch of (detached) embeddings; backprop it to the *embeddings* only, giving their gradients
   (and the gradients of parameters the loss uses directly, such as ``logit_scale``);
3. **replay** each chunk with a graph and backprop ``sum(embedding * cached_gradient)``, whose gradient with respect
   to the parameters is exactly that chunk's share of the full-batch gradient (chain rule); then free its graph.

Peak activation memory is that of one chunk, whatever the batch; compute is about one extra forward pass.

Random state: the two passes over a chunk must compute the same function. Dropout draws its masks from the RNG,
so the RNG state (CPU and the CUDA device) is **captured before each chunk's first pass and replayed** for its second
one (GradCache's ``RandContext``): with dropout on, the gradients are exactly those of a plain loss over the same
chunked forward passes (tested). Dropout masks then differ from an unchunked forward's (they are drawn per chunk),
so equality with the *plain* loss is tested with dropout off. BatchNorm in training mode normalises by the
statistics of a chunk (as any micro-batching does); its running statistics are restored after the first pass, so
they are updated once per chunk, not twice.

Inputs
------
A collated batch (``DialogueRetrievalCollator`` / ``DialCLIPProcessor`` keys of ``docs/internals.md``): contexts
``input_ids``/``attention_mask`` (B, L) with ``context_pixel_values`` (one per ``[IMG]`` placeholder, or indexed
by ``context_image_batch_index`` for DialCLIP), responses ``response_input_ids`` (T, Lr) for the text rows and
``response_pixel_values`` (I, ...) for the image rows in batch order, ``response_modality`` (B,), ``response_ids``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: ``loss_fn(model, context_embeds (B, 2, D), response_embeds (B, D), intent_logits (B, 2) | None, inputs) -> loss``
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, "torch.Tensor | None", dict[str, Any]], torch.Tensor]
_TURN_KEYS = {  # DialCLIP's per-turn tensors and the key holding the dialogue of each row
    "context_input_ids": "context_text_batch_index",
    "context_attention_mask": "context_text_batch_index",
    "context_pixel_values": "context_image_batch_index",
}
_OUTPUTS = ("context_embeds", "response_embeds", "intent_logits")


def retriever_of(model: nn.Module) -> nn.Module:
    """The retriever under DDP (``.module``) and PEFT wrappers, whose ``compute_loss``/``config`` we need."""
    inner = getattr(model, "module", model)
    get_base = getattr(inner, "get_base_model", None)
    return get_base() if callable(get_base) else inner


def default_loss(model: nn.Module, context_embeds: torch.Tensor, response_embeds: torch.Tensor,
                 intent_logits: torch.Tensor | None, inputs: dict[str, Any]) -> torch.Tensor:
    """The model's own in-batch loss (``compute_loss``; DR/SDR add their intent loss from ``intent_logits``)."""
    modality = inputs.get("response_modality", inputs.get("labels"))
    return retriever_of(model).compute_loss(
        context_embeds=context_embeds, response_embeds=response_embeds, response_modality=modality,
        response_ids=inputs.get("response_ids"), intent_logits=intent_logits,
    )


# ------------------------------------------------------------------------------------------------------ chunking
def split_batch(inputs: dict[str, Any], chunk_size: int, image_token_id: int | None = None) -> list[dict[str, Any]]:
    """Cut a collated batch into consecutive chunks of ``chunk_size`` examples, each a valid batch on its own.

    Context images follow their placeholders (or DialCLIP's batch indices), text/image responses follow
    ``response_modality``, and every (ids, mask) pair is cut to the longest row of its chunk (less padding).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    batch = int(inputs["input_ids"].size(0))
    modality = inputs.get("response_modality", inputs.get("labels"))
    # Row of each context image, and of each text / image response, so a chunk takes exactly its own.
    image_rows = None
    if inputs.get("context_pixel_values") is not None and "context_image_batch_index" not in inputs:
        if image_token_id is None:
            raise ValueError("context_pixel_values need the model's image_token_id to be split into chunks")
        image_rows = (inputs["input_ids"] == image_token_id).nonzero()[:, 0]
    response_rows = {}
    if modality is not None:
        is_image = modality.bool()
        response_rows = {"text": (~is_image).nonzero()[:, 0], "image": is_image.nonzero()[:, 0]}
    chunks = []
    for start in range(0, batch, chunk_size):
        stop = min(start + chunk_size, batch)
        chunk: dict[str, Any] = {}
        for key, value in inputs.items():
            if not torch.is_tensor(value):
                chunk[key] = value
            elif key in _TURN_KEYS and _TURN_KEYS[key] in inputs:
                owner = inputs[_TURN_KEYS[key]]
                chunk[key] = value[(owner >= start) & (owner < stop)]
            elif key in ("context_text_batch_index", "context_image_batch_index"):
                chunk[key] = value[(value >= start) & (value < stop)] - start
            elif key == "context_pixel_values" and image_rows is not None:
                chunk[key] = value[(image_rows >= start) & (image_rows < stop)]
            elif key in ("response_input_ids", "response_attention_mask") and response_rows:
                chunk[key] = value[_between(response_rows["text"], start, stop)]
            elif key == "response_pixel_values" and response_rows:
                chunk[key] = value[_between(response_rows["image"], start, stop)]
            elif value.dim() > 0 and value.size(0) == batch:
                chunk[key] = value[start:stop]
            else:
                chunk[key] = value
        chunks.append(_trim_padding(_drop_empty(chunk)))
    return chunks


def _between(rows: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    # rows is sorted, so the k-th text (image) response of the batch is row rows[k]: take the k in [start, stop).
    return ((rows >= start) & (rows < stop)).nonzero()[:, 0]


def _drop_empty(chunk: dict[str, Any]) -> dict[str, Any]:
    # A chunk without image (text) responses must pass None, not an empty tensor, to the response towers.
    for key in ("response_input_ids", "response_attention_mask", "response_pixel_values", "context_pixel_values"):
        if torch.is_tensor(chunk.get(key)) and chunk[key].size(0) == 0:
            chunk[key] = None
    return chunk


def _trim_padding(chunk: dict[str, Any]) -> dict[str, Any]:
    for ids, mask in (("input_ids", "attention_mask"), ("response_input_ids", "response_attention_mask"),
                      ("context_input_ids", "context_attention_mask")):
        if torch.is_tensor(chunk.get(mask)) and chunk[mask].numel() > 0:
            width = max(int(chunk[mask].sum(1).max()), 1)
            chunk[ids], chunk[mask] = chunk[ids][:, :width], chunk[mask][:, :width]
    return chunk


# -------------------------------------------------------------------------------------------------- random state
@dataclass
class RngState:
    """The CPU RNG state and the CUDA device's, captured before a chunk's first pass and replayed for its second."""

    cpu: torch.Tensor
    cuda: tuple[int, torch.Tensor] | None

    @classmethod
    def capture(cls, device: torch.device) -> RngState:
        cuda = None
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            cuda = (index, torch.cuda.get_rng_state(index))
        return cls(torch.get_rng_state(), cuda)

    @contextlib.contextmanager
    def replay(self) -> Any:
        """Run the block from this state; the caller's RNG continues as if the block had not run."""
        devices = [self.cuda[0]] if self.cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda:
                torch.cuda.set_rng_state(self.cuda[1], self.cuda[0])
            yield


def _batchnorm_buffers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, saved copy) of every BatchNorm running statistic that a training-mode forward updates."""
    saved = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training and module.track_running_stats:
            for buffer in (module.running_mean, module.running_var, module.num_batches_tracked):
                if buffer is not None:
                    saved.append((buffer, buffer.detach().clone()))
    return saved


# ---------------------------------------------------------------------------------------------------------- step
def _embed(model: nn.Module, chunk: dict[str, Any]) -> dict[str, torch.Tensor | None]:
    out = model(**chunk, return_loss=False)
    return {name: getattr(out, name, None) for name in _OUTPUTS}


def cached_training_step(
    model: nn.Module,
    inputs: dict[str, Any],
    chunk_size: int,
    loss_fn: LossFn | None = None,
    *,
    loss_scale: float = 1.0,
    forward_context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    backward: Callable[[torch.Tensor], None] | None = None,
    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> torch.Tensor:
    """Accumulate into ``.grad`` the gradients of ``loss_scale * loss_fn(full batch)`` chunk by chunk; return the
    (unscaled, detached) loss.

    Args:
        model: a retriever following ``docs/internals.md`` (may be wrapped by DDP or PEFT), in the mode to train in.
        inputs: one collated batch (see the module docstring), already on the model's device.
        chunk_size: examples per forward pass; peak activation memory is that of ``chunk_size`` examples.
        loss_fn: the loss on the full batch's embeddings (default :func:`default_loss`); the trainer passes one that
            gathers candidates across processes. It may use parameters directly (``logit_scale``).
        loss_scale: multiplies every gradient (e.g. ``1 / gradient_accumulation_steps``).
        forward_context: entered around every forward (e.g. the Trainer's autocast).
        backward: ``backward(tensor)`` (default ``tensor.backward()``; the Trainer passes ``accelerator.backward``).
        no_sync: DDP's ``no_sync`` context: every chunk but the last skips the gradient all-reduce.
    """
    loss_fn = loss_fn or default_loss
    backward = backward or (lambda tensor: tensor.backward())
    device = inputs["input_ids"].device
    chunks = split_batch(inputs, chunk_size, getattr(retriever_of(model).config, "image_token_id", None))

    # 1. Embeddings without a graph, remembering each chunk's random state.
    bn_saved = _batchnorm_buffers(model)
    states, cached = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(RngState.capture(device))
            with forward_context():
                cached.append(_embed(model, chunk))
    for buffer, saved in bn_saved:  # the replay below updates the running statistics once
        buffer.copy_(saved)

    # 2. Full-batch loss on leaf copies of the embeddings -> their gradients (and those of parameters the loss reads).
    leaves = {
        name: torch.cat([c[name] for c in cached]).detach().requires_grad_()
        for name in _OUTPUTS if all(c[name] is not None for c in cached)
    }
    params = [p for p in model.parameters() if p.requires_grad]
    with forward_context():
        loss = loss_fn(model, leaves["context_embeds"], leaves["response_embeds"], leaves.get("intent_logits"), inputs)
    grads = torch.autograd.grad(loss * loss_scale, [*leaves.values(), *params], allow_unused=True)
    leaf_grads = dict(zip(leaves, grads[: len(leaves)]))
    # Applied in the last chunk's backward so that DDP's all-reduce (which runs there) carries them too.
    param_grads = [(p, g) for p, g in zip(params, grads[len(leaves):]) if g is not None]
    del cached, leaves

    # 3. Replay each chunk with a graph; backprop its embeddings' cached gradients.
    starts = _chunk_offsets(chunks, inputs)
    for k, (chunk, state) in enumerate(zip(chunks, states)):
        last = k == len(chunks) - 1
        sync = contextlib.nullcontext() if last or no_sync is None else no_sync()
        with sync:
            with state.replay(), forward_context():
                out = _embed(model, chunk)
            surrogate = sum(
                (out[name].float() * grad[starts[k] : starts[k + 1]].float()).sum()
                for name, grad in leaf_grads.items() if grad is not None
            )
            if last:
                surrogate = surrogate + sum((p * g).sum() for p, g in param_grads)
            backward(surrogate)
    return loss.detach()


def _chunk_offsets(chunks: Sequence[dict[str, Any]], inputs: dict[str, Any]) -> list[int]:
    sizes = [int(chunk["input_ids"].size(0)) for chunk in chunks]
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    if offsets[-1] != int(inputs["input_ids"].size(0)):
        raise RuntimeError("chunks do not cover the batch")  # a bug in split_batch, never user input
    return offsets


__all__ = ["LossFn", "RngState", "cached_training_step", "default_loss", "retriever_of", "split_batch"]
