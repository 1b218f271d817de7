"""Candidate pools of an evaluation dataset (unified schema, docs/internals.md).

- **Shared pool** (synthetic corpus, PhotoChat): the deduplicated responses of the evaluation set itself, texts and
  images, one candidate per distinct ``(modality, response.id)``. Every query is ranked against all of it.
- **Per-query pools** (MMDialog): each example's true response plus its own ``candidates`` (999 texts + 999 images).

Response ids and modalities are read from the Arrow table directly, so building a pool decodes no image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ..modeling.modeling_outputs import RESPONSE_MODALITIES


def _column(dataset: datasets.Dataset, name: str) -> pa.Array:
    # `with_format("arrow")[:]` honours an indices mapping (select/shuffle/shard), unlike `dataset.data`.
    return dataset.select_columns([name]).with_format("arrow")[:].column(name).combine_chunks()


def _modality_labels(values: Sequence[str | None], where: str) -> list[int]:
    labels = []
    for row, value in enumerate(values):
        if value not in RESPONSE_MODALITIES:
            raise ValueError(f"{where}: row {row} has response modality {value!r}; expected one of {RESPONSE_MODALITIES}")
        labels.append(RESPONSE_MODALITIES.index(value))
    return labels


def response_keys(dataset: datasets.Dataset) -> tuple[list[int], list[str]]:
    """Modality label and ``response.id`` of every example, in dataset order."""
    if "response" not in dataset.column_names:
        raise ValueError(f"evaluation dataset has no `response` column (columns: {dataset.column_names})")
    response = _column(dataset, "response")
    ids = response.field("id").to_pylist()
    if any(value is None for value in ids):
        row = ids.index(None)
        raise ValueError(f"evaluation dataset, row {row}: field `response.id` is missing; every response needs an id "
                         "(see hf_dialret.data.schema)")
    return _modality_labels(response.field("modality").to_pylist(), "evaluation dataset"), ids


def has_candidate_pools(dataset: datasets.Dataset) -> bool:
    """True when the dataset carries per-example ``candidates`` (MMDialog's 1 + 999 protocol)."""
    if "candidates" not in dataset.column_names or len(dataset) == 0:
        return False
    return candidate_pool_width(dataset) > 1


def candidate_pool_width(dataset: datasets.Dataset) -> int:
    """Largest per-example pool: 1 (the true response) + its candidate texts + its candidate images."""
    candidates = _column(dataset, "candidates")
    sizes = [pc.fill_null(pc.list_value_length(candidates.field(key)), 0) for key in ("texts", "images")]
    return 1 + int(pc.max(pc.add(sizes[0], sizes[1])).as_py() or 0)


@dataclass(frozen=True)
class SharedPool:
    """One deduplicated pool for every query.

    Attributes:
        rows: dataset row whose response *is* each candidate (its first occurrence).
        modality: `(N,)` candidate modality labels.
        query_candidate: `(Q,)` the candidate that each query's true response is.
    """

    rows: list[int]
    modality: torch.Tensor
    query_candidate: torch.Tensor

    def __len__(self) -> int:
        return len(self.rows)


def build_shared_pool(dataset: datasets.Dataset) -> SharedPool:
    """Deduplicate the responses of ``dataset`` by ``(modality, id)`` into a :class:`SharedPool`."""
    modalities, ids = response_keys(dataset)
    candidate_of: dict[tuple[int, str], int] = {}
    rows: list[int] = []
    query_candidate = []
    for row, key in enumerate(zip(modalities, ids)):
        if key not in candidate_of:
            candidate_of[key] = len(rows)
            rows.append(row)
        query_candidate.append(candidate_of[key])
    return SharedPool(
        rows=rows,
        modality=torch.tensor([modalities[row] for row in rows], dtype=torch.long),
        query_candidate=torch.tensor(query_candidate, dtype=torch.long),
    )


def example_pool(example: dict[str, Any]) -> tuple[list[dict[str, Any]], torch.Tensor, torch.Tensor]:
    """Candidates of one example (true response first), their modality labels and positive mask.

    A candidate text equal (after normalisation) to a true text response is a duplicate of it and counts as a
    positive, as in the shared pool. Candidate images carry no id, so only the true image is positive.
    """
    from ..data.schema import text_response_id

    response = example["response"]
    candidates = example.get("candidates") or {}
    texts = list(candidates.get("texts") or [])
    images = list(candidates.get("images") or [])
    pool = [response] + [{"modality": "text", "text": text} for text in texts] + [{"modality": "image", "image": image} for image in images]
    modality = torch.tensor([RESPONSE_MODALITIES.index(response["modality"])] + [0] * len(texts) + [1] * len(images))
    positives = torch.zeros(len(pool), dtype=torch.bool)
    positives[0] = True
    if response["modality"] == "text":
        positives[1 : 1 + len(texts)] = torch.tensor([text_response_id(text) == response["id"] for text in texts], dtype=torch.bool)
    return pool, modality, positives
