"""FAISS-level pieces of :class:`~hf_dialret.retrieval.ResponseIndex`: which pools a query searches, the search of
the per-modality sub-indexes with the merge into one top-k, and training of approximate indexes.

Pure functions over arrays and FAISS indexes, kept apart so that the hot path of a search is easy to read and to
benchmark (``bench/search.py`` compares it with a raw ``IndexFlatIP.search``).
"""

from __future__ import annotations

from typing import Literal

import faiss
import numpy as np

from ..modeling.modeling_outputs import RESPONSE_MODALITIES

SearchModality = Literal["auto", "both", "text", "image"]
#: IVF indexes are trained on a random subset of 64 vectors per list (FAISS warns below 39 and caps at 256): k-means
#: quality saturates well before the cap, and training time grows linearly with the sample. Every trainable index
#: gets at least _MIN_TRAIN vectors (PQ codebooks need ~10k: 256 centroids per sub-quantizer).
_TRAIN_PER_LIST = 64
_MIN_TRAIN = 65536


def select_pools(
    batch: int, modality: SearchModality, intent_logits: np.ndarray | None, joint_response_pool: bool
) -> np.ndarray:
    """(B, 2) booleans: which modality pools each query searches.

    ``"auto"``: both pools for joint-pool models (MDR, DialCLIP); for DR / SDR only the pool of the predicted
    response modality (the two-step inference), read from ``intent_logits``.
    """
    pools = np.zeros((batch, len(RESPONSE_MODALITIES)), dtype=bool)
    if modality in RESPONSE_MODALITIES:
        pools[:, RESPONSE_MODALITIES.index(modality)] = True
    elif modality == "both" or (modality == "auto" and joint_response_pool):
        pools[:] = True
    elif modality == "auto":
        if intent_logits is None:
            raise ValueError("modality='auto' with an intent model needs intent_logits (or pick a modality)")
        pools[np.arange(batch), np.asarray(intent_logits).argmax(axis=1)] = True
    else:
        raise ValueError(f"modality must be 'auto', 'both', 'text' or 'image', got {modality!r}")
    return pools


def search_pools(
    indexes: dict[str, faiss.Index], ids: dict[str, np.ndarray], queries: np.ndarray, pools: np.ndarray, k: int
) -> tuple[list[list[float]], list[list[int]]]:
    """Top-``k`` (scores, global ids) per query over the pools it searches, best first; -1 ids pad short pools.

    ``queries`` is (B, Q, D) with Q = 2 (one query per modality, as ``encode_context`` returns) or 1 (shared). Each
    sub-index is searched once for all the rows that use it; the union's top-k is the top-k of the per-pool top-k's,
    so merging them ranks the joint pool exactly.
    """
    batch = len(queries)
    scores = np.full((batch, len(RESPONSE_MODALITIES), k), -np.inf, dtype=np.float32)
    found = np.full(scores.shape, -1, dtype=np.int64)
    for m, name in enumerate(RESPONSE_MODALITIES):
        rows = np.flatnonzero(pools[:, m])
        index = indexes.get(name)
        if rows.size == 0 or index is None or index.ntotal == 0:
            continue
        query = queries[rows, min(m, queries.shape[1] - 1)]  # fancy indexing: a fresh contiguous copy
        faiss.normalize_L2(query)
        distances, positions = index.search(query, k)
        valid = positions >= 0  # FAISS pads with -1 when a pool has fewer than k candidates
        scores[rows, m] = np.where(valid, distances, -np.inf)
        found[rows, m] = np.where(valid, ids[name][np.maximum(positions, 0)], -1)
    flat_scores, flat_ids = scores.reshape(batch, -1), found.reshape(batch, -1)
    order = np.argsort(-flat_scores, axis=1, kind="stable")[:, :k]
    return (np.take_along_axis(flat_scores, order, axis=1).tolist(),
            np.take_along_axis(flat_ids, order, axis=1).tolist())


def train_index(index: faiss.Index, vectors: np.ndarray, what: str) -> None:
    """Train an approximate index on a normalised random subset of ``vectors`` (see :data:`_TRAIN_PER_LIST`)."""
    ivf = faiss.try_extract_index_ivf(index)
    limit = max(_TRAIN_PER_LIST * ivf.nlist, _MIN_TRAIN) if ivf is not None else _MIN_TRAIN
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(vectors), limit, replace=False)) if len(vectors) > limit else slice(None)
    sample = np.array(vectors[rows], dtype=np.float32, order="C", copy=True)
    faiss.normalize_L2(sample)
    try:
        index.train(sample)
    except RuntimeError as error:
        raise ValueError(
            f"cannot train the {what} ({error}); approximate indexes need many more candidates than lists/codes: "
            "use factory='Flat' for small pools"
        ) from None
