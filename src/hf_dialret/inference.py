"""Fast encoding of dialogues and candidate responses with any hf_dialret retriever.

``encode_contexts(model, processor, dialogues)`` and ``encode_responses(model, processor, responses)`` return
L2-normalised float32 embeddings in input order. What makes them fast, and why:

- **Tokenise once per chunk, not per batch.** One processor call covers ``chunk_size`` inputs (the fast tokenizer
  batches in Rust); the model loop then only slices tensors, so no per-example Python runs between forward passes.
- **Length buckets.** The chunk is sorted by true token length (longest first, so the peak memory comes at once)
  and every batch is cut to its own longest row: far less padding than batches in input order, where one long
  dialogue pads its whole batch. Results are written back at their input positions.
- **``torch.inference_mode``** (no autograd bookkeeping) and **SDPA attention** (:func:`ensure_sdpa`).
- **bf16 autocast where the hardware has it** (``precision="auto"``): CUDA GPUs with bf16, and CPUs with native
  bf16 matmuls (AVX512-BF16 or AMX, read from ``/proc/cpuinfo``). CPUs without them emulate bf16, which is slower
  than fp32, so ``auto`` keeps fp32 there. One autocast region spans the whole loop, so each weight is cast to bf16
  once per call, not once per batch.
- **No per-call walk of the module tree** (:func:`eval_mode`): only modules that are training are switched to eval
  and back, so a model already in eval mode costs nothing.

Works with DR, SDR, MDR and DialCLIP (also inside a ``PeftModel``): only the contract of ``docs/internals.md`` and
the processor's output keys are used. This is the library's one encoding path:
:class:`~hf_dialret.retrieval.ResponseIndex` encodes its candidates and queries through it (with its ``precision``
passed through), and :func:`encode_contexts_with_intent` adds the intent logits that DR / SDR need for their two-step search.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from PIL import Image

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS = ("auto", "fp32", "bf16")
#: /proc/cpuinfo flags of CPUs that multiply bf16 natively (AVX512-BF16 dot products, AMX tiles).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: Padded (ids, mask) pairs whose columns are cut to the longest row of each batch.
_TOKEN_PAIRS = (
    ("input_ids", "attention_mask"),
    ("response_input_ids", "response_attention_mask"),
    ("context_input_ids", "context_attention_mask"),
)
#: DialCLIP's per-turn tensors and the key holding the dialogue (batch row) of each of their rows.
_INDEXED = {
    "context_input_ids": "context_text_batch_index",
    "context_attention_mask": "context_text_batch_index",
    "context_pixel_values": "context_image_batch_index",
}


# ------------------------------------------------------------------------------------------------------ precision
@lru_cache(maxsize=1)
def cpu_bf16_flags() -> frozenset[str]:
    """The native-bf16 flags of this CPU (empty when there are none or ``/proc/cpuinfo`` cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return BF16_CPU_FLAGS & set(line.split(":", 1)[1].split())
    return frozenset()


def bf16_is_fast(device: torch.device | str) -> bool:
    """Whether bf16 matmuls run natively (faster than fp32) on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_bf16_flags())
    return False


def resolve_precision(precision: str, device: torch.device | str) -> Literal["fp32", "bf16"]:
    """``"auto"`` -> ``"bf16"`` where :func:`bf16_is_fast`, else ``"fp32"``; explicit choices are kept."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    return precision  # type: ignore[return-value]


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` for ``"bf16"`` (weights stay fp32; matmuls run in bf16), else nothing."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def ensure_sdpa(model: torch.nn.Module) -> list[str]:
    """Switch every transformers sub-model that runs eager attention to SDPA; return those that could not switch.

    SDPA fuses softmax(QK^T)V into one kernel (flash/memory-efficient on GPU, a fused kernel on CPU).
    transformers picks it by default, but a model loaded with ``attn_implementation="eager"`` would keep the slow path.
    """
    from transformers import PreTrainedModel

    stuck = []
    for name, module in model.named_modules():
        config = getattr(module, "config", None)
        if not isinstance(module, PreTrainedModel) or getattr(config, "_attn_implementation", None) != "eager":
            continue
        if not any("Attention" in type(sub).__name__ for sub in module.modules()):
            continue  # e.g. a ResNet: "eager" is only the config's default, there is no attention to switch
        try:
            module.set_attn_implementation("sdpa")
        except (ValueError, ImportError, NotImplementedError):
            stuck.append(name or type(module).__name__)
    return stuck


# ------------------------------------------------------------------------------------------------------- slicing
def _model_device(model: torch.nn.Module) -> torch.device:
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device


def _base(model: Any) -> Any:
    get_base = getattr(model, "get_base_model", None)  # a PeftModel (DialCLIP adapter)
    return get_base() if callable(get_base) else model


def _accepted(method: Any) -> frozenset[str]:
    return frozenset(inspect.signature(method).parameters)


def _placeholder_rows(batch: dict[str, torch.Tensor], image_token_id: int | None) -> torch.Tensor | None:
    """Row of each context image of a DR/SDR/MDR batch: placeholders in row-major order = images in order."""
    if "context_pixel_values" not in batch or "context_image_batch_index" in batch or image_token_id is None:
        return None
    return (batch["input_ids"] == image_token_id).nonzero()[:, 0]


def _slice(batch: dict[str, torch.Tensor], rows: torch.Tensor, image_rows: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The sub-batch of ``rows`` (in that order), every padded (ids, mask) pair cut to its longest row."""
    n = int(batch["_n"])
    position = torch.full((n,), -1, dtype=torch.long, device=rows.device)
    position[rows] = torch.arange(rows.numel(), device=rows.device)
    out: dict[str, torch.Tensor] = {}
    for key, value in batch.items():
        if key == "_n":
            continue
        if key in _INDEXED and _INDEXED[key] in batch:  # DialCLIP turns: keep those of the rows, renumber
            owner = position[batch[_INDEXED[key]]]
            out[key] = value[owner >= 0]
        elif key in ("context_text_batch_index", "context_image_batch_index"):
            owner = position[value]
            out[key] = owner[owner >= 0]
        elif key == "context_pixel_values" and image_rows is not None:
            owner = position[image_rows]
            keep = (owner >= 0).nonzero()[:, 0]
            # Images must follow the placeholders of the new row order: stable sort by new row.
            out[key] = value[keep[torch.argsort(owner[keep], stable=True)]]
        elif value.dim() > 0 and value.size(0) == n:
            out[key] = value[rows]
        else:
            out[key] = value
    for ids, mask in _TOKEN_PAIRS:
        if mask in out and out[mask].numel() > 0:
            width = max(int(out[mask].sum(1).max()), 1)
            out[ids], out[mask] = out[ids][:, :width], out[mask][:, :width]
    return out


def _chunks(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


# --------------------------------------------------------------------------------------------------------- modes
@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run the block without dropout, then give every module back exactly the mode it had.

    Only modules that are in training mode are touched. ``model.eval()`` followed by ``model.train(was_training)``
    sets every module twice per call (~2 ms for a 4-layer BERT pair of 243 modules, against ~0.3 ms for the scan
    here), and it would switch sub-modules that the caller deliberately keeps in eval mode (a frozen tower inside a
    training model) to training mode afterwards.
    """
    training = [module for module in model.modules() if module.training]
    if training:
        model.eval()  # through eval(), so that modules overriding train() see the switch
    try:
        yield
    finally:
        for module in training:
            module.training = True


# ------------------------------------------------------------------------------------------------------ encoding
#: One forward pass on a sub-batch -> one or more (rows, ...) tensors, already in their final form.
_Call = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, ...]]


def _buckets(
    encoded: dict[str, Any], lengths: torch.Tensor, batch_size: int, accepted: frozenset[str],
    image_token_id: int | None, device: torch.device,
) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Yield ``(rows, sub-batch)`` per length bucket of one tokenised chunk (longest bucket first)."""
    encoded = {k: v.to(device, non_blocking=True) for k, v in encoded.items() if torch.is_tensor(v) and k in accepted}
    encoded["_n"] = torch.tensor(lengths.numel())
    image_rows = _placeholder_rows(encoded, image_token_id)
    order = torch.argsort(lengths.to(device), descending=True, stable=True)
    for rows in order.split(batch_size):
        yield rows, _slice(encoded, rows, image_rows)


def _finish(embeds: torch.Tensor) -> torch.Tensor:
    # Under autocast the projection ran in bf16; normalise again in fp32 so that every row has unit norm.
    return F.normalize(embeds.float(), dim=-1)


def encode_contexts(
    model: Any,
    processor: Any,
    dialogues: Sequence[Any],
    batch_size: int = 64,
    precision: Precision = "auto",
    modality: str | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Query embeddings of ``dialogues``: ``(N, 2, D)`` (``(N, D)`` with ``modality="text"|"image"``), float32, in
    input order, on the model's device.

    Args:
        model: an hf_dialret retriever (DR, SDR, MDR, DialCLIP, or a ``PeftModel`` around one).
        processor: its processor (``DialogueRetrievalProcessor`` or ``DialCLIPProcessor``).
        dialogues: lists of turns, as the processor takes them.
        batch_size: dialogues per forward pass.
        precision: ``"auto"`` (bf16 autocast where the hardware multiplies bf16 natively), ``"fp32"`` or ``"bf16"``.
        modality: only the query for this response modality.
        chunk_size: dialogues tokenised (and length-sorted) together; default ``16 * batch_size``. Larger chunks
            bucket better; they hold the chunk's tokens (and context images) in memory.
    """
    extra = {} if modality is None else {"modality": modality}
    method = model.encode_context
    (queries,) = _encode(
        model, _dialogue_tokenizer(processor), dialogues, lambda batch: (_finish(method(**batch, **extra)),),
        _accepted(method), "attention_mask", batch_size, precision, chunk_size, _image_token_id(model),
    )
    return queries


def encode_contexts_with_intent(
    model: Any,
    processor: Any,
    dialogues: Sequence[Any],
    batch_size: int = 64,
    precision: Precision = "auto",
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries ``(N, 2, D)`` and intent logits ``(N, 2)`` of a DR / SDR model (``has_intent_head``), in input order.

    Both come from one context-only ``forward`` per batch rather than ``encode_context`` + ``predict_intent``: SDR
    shares one context encoder between its queries and its intent head, so this runs it once instead of twice.
    See :func:`encode_contexts` for the arguments.
    """
    base = _base(model)

    def call(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        output = model(**batch, return_loss=False)
        if output.intent_logits is None:
            raise ValueError(f"{type(base).__name__} has no intent head (its forward returns no intent_logits); "
                             "use encode_contexts")
        return _finish(output.context_embeds), output.intent_logits.float()

    queries, intent = _encode(
        model, _dialogue_tokenizer(processor), dialogues, call, _accepted(base.forward), "attention_mask", batch_size,
        precision, chunk_size, _image_token_id(model),
    )
    return queries, intent


def encode_responses(
    model: Any,
    processor: Any,
    responses: Sequence[Any],
    batch_size: int = 64,
    precision: Precision = "auto",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Embeddings ``(R, D)`` of text and/or image ``responses`` (strings, PIL images or response dicts), float32, in
    input order, on the model's device. See :func:`encode_contexts` for the arguments.

    Texts are length-bucketed in chunks of ``chunk_size`` (default ``16 * batch_size``). Images all have one size,
    so sorting them gains nothing: they are processed ``batch_size`` at a time (unless ``chunk_size`` is given),
    which bounds the pixel values held at once (a 1,024-image chunk at 224 px would be 600 MB).
    """
    if len(responses) == 0:
        raise ValueError("encode_responses needs at least one response")
    is_image = [_is_image(r) for r in responses]
    groups = (
        ([i for i, image in enumerate(is_image) if not image], "response_attention_mask", chunk_size),
        ([i for i, image in enumerate(is_image) if image], None, chunk_size or batch_size),
    )
    method = model.encode_responses
    accepted = _accepted(method)
    parts: list[tuple[list[int], torch.Tensor]] = []
    for index, mask_key, group_chunk in groups:
        if not index:
            continue
        items = responses if len(index) == len(responses) else [responses[i] for i in index]
        (embeds,) = _encode(
            model, lambda chunk: processor(responses=list(chunk), return_tensors="pt"), items,
            lambda batch: (_finish(method(**batch)),), accepted, mask_key, batch_size, precision, group_chunk, None,
        )
        parts.append((index, embeds))
    if len(parts) == 1:  # one modality: already in input order
        return parts[0][1]
    out = parts[0][1].new_empty((len(responses), parts[0][1].size(-1)))
    for index, embeds in parts:
        out[torch.tensor(index, device=out.device)] = embeds
    return out


def _is_image(response: Any) -> bool:
    if isinstance(response, Image.Image):
        return True
    if isinstance(response, dict):
        return response.get("modality") == "image" or (response.get("modality") is None and response.get("text") is None)
    return False


def _dialogue_tokenizer(processor: Any) -> Callable[[Sequence[Any]], Any]:
    return lambda items: processor(dialogues=list(items), return_tensors="pt")


def _image_token_id(model: Any) -> int | None:
    return getattr(_base(model).config, "image_token_id", None)


def _encode(
    model: Any, tokenize: Callable[[Sequence[Any]], Any], items: Sequence[Any], call: _Call, accepted: frozenset[str],
    mask_key: str | None, batch_size: int, precision: str, chunk_size: int | None, image_token_id: int | None,
) -> list[torch.Tensor]:
    """Run ``call`` over length buckets of ``items``; its outputs gathered as float32 tensors in input order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = _model_device(model)
    chunk_size = chunk_size or 16 * batch_size
    outs: list[torch.Tensor] = []
    # One autocast region for every chunk: its weight-cast cache then casts each weight once, not per batch.
    with eval_mode(model), torch.inference_mode(), autocast(device, precision):
        for start, chunk in _chunks(items, chunk_size):
            encoded = dict(tokenize(chunk))
            lengths = encoded[mask_key].sum(1) if mask_key else torch.zeros(len(chunk), dtype=torch.long)
            for rows, batch in _buckets(encoded, lengths, batch_size, accepted, image_token_id, device):
                results = call(batch)
                if not outs:
                    outs = [torch.empty((len(items), *r.shape[1:]), dtype=torch.float32, device=device)
                            for r in results]
                for out, result in zip(outs, results):
                    out[rows + start] = result
    if not outs:
        raise ValueError("nothing to encode: the input sequence is empty")
    return outs


__all__ = [
    "PRECISIONS",
    "Precision",
    "autocast",
    "bf16_is_fast",
    "cpu_bf16_flags",
    "encode_contexts",
    "encode_contexts_with_intent",
    "encode_responses",
    "eval_mode",
    "ensure_sdpa",
    "resolve_precision",
]
