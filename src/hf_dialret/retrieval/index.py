"""``ResponseIndex``: a searchable pool of text and image candidate responses, encoded by an hf_dialret retriever.

One FAISS sub-index per response modality, all with inner-product metric on L2-normalised embeddings (cosine). A
query scores each candidate with the query embedding of the candidate's modality (``context_embeds[:, m]``, see
``docs/internals.md``), so:

- MDR / DialCLIP (``joint_response_pool``): both sub-indexes are searched and the two top-k lists merged, which is
  exactly the top-k of the joint pool;
- DR / SDR: the intent head picks the modality per dialogue and only that pool is searched (``modality="both"``
  merges both pools instead, ``"text"`` / ``"image"`` force one).

Exact search (``factory="Flat"``, FAISS ``IndexFlatIP``) is the default; any FAISS factory string (``"HNSW32"``,
``"IVF1024,PQ32"``, ``"IVF256,Flat"``) gives an approximate index for large pools, trained on the first vectors added.

Candidates and queries are encoded by :mod:`hf_dialret.inference` (length buckets, inference mode), with the index's
``precision``: ``"auto"`` (bf16 autocast where the hardware multiplies bf16 natively, else fp32), ``"fp32"`` (the
model's exact fp32 embeddings) or ``"bf16"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm.auto import tqdm

from .. import __version__
from ..inference import PRECISIONS, Precision, eval_mode
from ..modeling.modeling_outputs import RESPONSE_MODALITIES
from .candidates import (
    IMAGE_MODALITY,
    TEXT_MODALITY,
    Candidate,
    RetrievalHit,
    count_hint,
    iter_candidates,
    precomputed_candidate,
)
from .encoding import (
    PROBE_MIN_COSINE,
    ModelIdentity,
    encode_candidates,
    encode_dialogues,
    model_identity,
    probe_embedding,
)
from .ranking import SearchModality, search_pools, select_pools, train_index
from .storage import CONFIG_NAME, atomic_write_dir, read_index_files, reading, write_index_files

#: Vectors are normalised and handed to FAISS in chunks of this many rows, so adding never doubles the memory.
_ADD_CHUNK = 65536
#: Texts (and dialogues) are encoded this many batches at a time: enough rows for the length buckets of
#: :mod:`hf_dialret.inference` to cut padding, few enough that a chunk's tokens are small.
_BATCHES_PER_CHUNK = 16


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


class ResponseIndex:
    """A candidate pool of text and image responses, searchable with dialogues.

    Build one with :meth:`build` (a model and its processor encode the candidates) or :meth:`from_embeddings`
    (precomputed vectors); grow it with :meth:`add`; query it with :meth:`search`; persist it with :meth:`save` and
    :meth:`load`. ``precision`` (``"auto"``, ``"fp32"``, ``"bf16"``; an attribute, saved with the index) is the
    precision of every encoding the index does, candidates and queries alike.

    Example:

    ```python
    >>> index = ResponseIndex.build(model, processor, texts=["sure!", "no way"], images=["cat.jpg"])
    >>> hits = index.search([["do you have a pet?", "yes, a cat"]], k=2)[0]
    >>> [(h.modality, h.value, round(h.score, 3)) for h in hits]
    ```
    """

    def __init__(self, dim: int, factory: str = "Flat", *, model_info: ModelIdentity | None = None) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        # Fail now on a bad factory string, not after encoding a large pool.
        try:
            faiss.index_factory(int(dim), factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as error:
            raise ValueError(f"invalid FAISS factory string {factory!r}: {error}") from None
        self.dim = int(dim)
        self.factory = factory
        self.model_info = model_info
        self.search_parameters: str | None = None
        self.batch_size = 64
        self.show_progress = True
        self.precision: Precision = "auto"
        self._indexes: dict[str, faiss.Index] = {}
        self._ids: dict[str, np.ndarray] = {m: np.zeros(0, dtype=np.int64) for m in RESPONSE_MODALITIES}
        self._candidates: list[Candidate] = []
        self._probe: np.ndarray | None = None
        self.model: Any = None
        self.processor: Any = None

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def build(
        cls,
        model: Any,
        processor: Any,
        candidates: Iterable[Any] | None = None,
        *,
        texts: Iterable[str] | None = None,
        images: Iterable[Any] | None = None,
        factory: str = "Flat",
        batch_size: int = 64,
        show_progress: bool = True,
        precision: Precision = "auto",
    ) -> ResponseIndex:
        """Encode candidates with ``model`` and index them (see :meth:`add` for the accepted candidate forms).

        ``precision``: ``"auto"`` (bf16 autocast where the hardware multiplies bf16 natively, else fp32), ``"fp32"``
        (exact fp32 embeddings) or ``"bf16"``; kept for the queries of :meth:`search` and saved with the index.
        """
        _check_precision(precision)
        identity = model_identity(model)
        probe = probe_embedding(model, processor)
        if identity.dim is not None and identity.dim != probe.shape[0]:
            raise ValueError(
                f"{identity.architecture} declares projection_dim={identity.dim} but encodes {probe.shape[0]}-dim "
                "embeddings"
            )
        index = cls(probe.shape[0], factory, model_info=identity)
        index.model, index.processor, index._probe = model, processor, probe
        index.batch_size, index.show_progress, index.precision = batch_size, show_progress, precision
        index.add(candidates, texts=texts, images=images)
        return index

    @classmethod
    def from_embeddings(
        cls,
        embeddings: np.ndarray,
        candidates: Sequence[Any] | None = None,
        *,
        modality: str | Sequence[str] = "text",
        factory: str = "Flat",
    ) -> ResponseIndex:
        """Index precomputed candidate embeddings (N, D), e.g. from an evaluation run, without a model."""
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be (num_candidates, dim), got shape {embeddings.shape}")
        index = cls(embeddings.shape[1], factory)
        index.add_embeddings(embeddings, candidates, modality=modality)
        return index

    def bind(self, model: Any, processor: Any, *, check: bool = True) -> ResponseIndex:
        """Attach the model that encodes queries (and new candidates), failing clearly on a mismatch.

        Checks the architecture and embedding width against the ones recorded at build time and, with ``check``,
        re-encodes a probe text: other weights of the same architecture give another vector.
        """
        identity = model_identity(model)
        built_with = self.model_info
        if built_with is not None and identity.architecture != built_with.architecture:
            raise ValueError(
                f"model/index mismatch: the index was built with a {built_with.architecture} "
                f"({built_with.name_or_path or 'unknown checkpoint'}) but the model is a {identity.architecture}"
            )
        if identity.dim is not None and identity.dim != self.dim:
            raise ValueError(
                f"model/index mismatch: the index holds {self.dim}-dim embeddings but {identity.architecture} "
                f"encodes {identity.dim}-dim ones (projection_dim)"
            )
        probe = probe_embedding(model, processor) if check or self._probe is None else self._probe
        if probe.shape[0] != self.dim:
            raise ValueError(
                f"model/index mismatch: the index holds {self.dim}-dim embeddings but the model encodes "
                f"{probe.shape[0]}-dim ones"
            )
        if check and self._probe is not None:
            cosine = float(probe @ self._probe / (np.linalg.norm(probe) * np.linalg.norm(self._probe) + 1e-12))
            if cosine < PROBE_MIN_COSINE:
                raise ValueError(
                    f"model/index mismatch: this {identity.architecture} encodes the probe text differently from the "
                    f"model that built the index (cosine {cosine:.3f} < {PROBE_MIN_COSINE}), so its weights differ; "
                    "rebuild the index with this model, or pass check=False / --no-check to search anyway"
                )
        self.model, self.processor = model, processor
        if self.model_info is None:
            self.model_info, self._probe = identity, probe
        return self

    # ------------------------------------------------------------------------------------------------ growing
    def add(
        self,
        candidates: Iterable[Any] | None = None,
        *,
        texts: Iterable[str] | None = None,
        images: Iterable[Any] | None = None,
    ) -> list[int]:
        """Encode and add candidates; returns their ids. All or nothing: a bad candidate adds none of them.

        ``texts``: strings. ``images``: file paths, ``PIL.Image``\\ s or ``datasets`` image cells. ``candidates``:
        a mixed list (``str`` = text, ``Path``/``PIL.Image`` = image, or dicts with ``"text"`` / ``"image"``), a
        ``datasets`` column, or unified-schema response dicts.
        """
        if self.model is None:
            raise RuntimeError("this index has no model: pass model= and processor= to ResponseIndex.load, or bind()")
        _check_precision(self.precision)
        buffers: dict[str, list[np.ndarray]] = {m: [] for m in RESPONSE_MODALITIES}
        new: list[Candidate] = []
        # Candidates wait per modality until a chunk is full. Texts go in chunks of many batches, so that the
        # length buckets cut padding; images batch_size at a time, because a waiting image is decoded when its
        # chunk is encoded and one size fits all (nothing to bucket). The candidates' order within each modality,
        # which ties vectors to ids, is the order they arrive in.
        limits = {TEXT_MODALITY: _BATCHES_PER_CHUNK * self.batch_size, IMAGE_MODALITY: self.batch_size}
        waiting: dict[str, list[Candidate]] = {m: [] for m in RESPONSE_MODALITIES}
        progress = tqdm(
            total=count_hint(texts, images, candidates),
            desc="Encoding candidates",
            unit="cand",
            disable=not self.show_progress,
        )
        with progress, eval_mode(self.model):  # one switch to eval mode for the whole pool, not one per chunk
            for candidate in iter_candidates(candidates, texts, images):
                new.append(candidate)
                queue = waiting[candidate.modality]
                queue.append(candidate)
                if len(queue) >= limits[candidate.modality]:
                    self._encode_into(queue, buffers, progress)
                    queue.clear()
            for queue in waiting.values():
                if queue:
                    self._encode_into(queue, buffers, progress)
        if not new:
            return []
        vectors = {m: np.concatenate(buffers[m]) for m in RESPONSE_MODALITIES if buffers[m]}
        return self._add_vectors(vectors, new)

    def _encode_into(self, chunk: list[Candidate], buffers: dict[str, list[np.ndarray]], progress: tqdm) -> None:
        encoded = encode_candidates(self.model, self.processor, chunk, self.batch_size, self.precision)
        for modality, embeds in encoded.items():
            if embeds.shape[1] != self.dim:
                raise ValueError(f"model/index mismatch: model encodes {embeds.shape[1]}-dim, index holds {self.dim}")
            buffers[modality].append(embeds)
        progress.update(len(chunk))

    def add_embeddings(
        self,
        embeddings: np.ndarray,
        candidates: Sequence[Any] | None = None,
        *,
        modality: str | Sequence[str] = "text",
    ) -> list[int]:
        """Add precomputed embeddings (N, D); ``modality`` is one name for all rows or one per row."""
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape (N, {self.dim}), got {embeddings.shape}")
        n = embeddings.shape[0]
        modalities = np.array([modality] * n if isinstance(modality, str) else list(modality), dtype=object)
        if len(modalities) != n or not set(modalities) <= set(RESPONSE_MODALITIES):
            raise ValueError(f"modality must be one of {RESPONSE_MODALITIES} or one of them per row")
        if candidates is None:
            records = [Candidate(str(m)) for m in modalities]
        else:
            if len(candidates) != n:
                raise ValueError(f"{len(candidates)} candidates for {n} embeddings")
            records = [precomputed_candidate(c, str(m)) for c, m in zip(candidates, modalities)]
        vectors = {m: embeddings[modalities == m] if len(set(modalities)) > 1 else embeddings
                   for m in RESPONSE_MODALITIES if (modalities == m).any()}
        return self._add_vectors(vectors, records)

    def _sub_index(self, modality: str) -> faiss.Index:
        if modality not in self._indexes:
            index = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
            inner = faiss.try_extract_index_ivf(index)
            if isinstance(faiss.downcast_index(inner) if inner is not None else None, faiss.IndexIVFPQ):
                # Polysemous training (the factory's default for IVF-PQ) takes minutes and only serves Hamming
                # pre-filtering, which search() never enables: skip it (as the "np" factory suffix does).
                faiss.downcast_index(inner).do_polysemous_training = False
            if self.search_parameters:
                faiss.ParameterSpace().set_index_parameters(index, self.search_parameters)
            self._indexes[modality] = index
        return self._indexes[modality]

    def _add_vectors(self, vectors: dict[str, np.ndarray], records: list[Candidate]) -> list[int]:
        first = len(self._candidates)
        ids = np.arange(first, first + len(records), dtype=np.int64)
        record_modality = np.array([c.modality for c in records], dtype=object)
        for modality, block in vectors.items():  # train everything first: a failure must leave nothing half-added
            index = self._sub_index(modality)
            if not index.is_trained:
                train_index(index, block, f"{self.factory!r} index on {len(block)} {modality} candidates")
        for modality, block in vectors.items():
            index = self._indexes[modality]
            for start in range(0, len(block), _ADD_CHUNK):
                # A normalised copy per chunk: never mutates the caller's array, never holds a second full copy.
                part = np.array(block[start : start + _ADD_CHUNK], dtype=np.float32, order="C", copy=True)
                faiss.normalize_L2(part)
                index.add(part)
            self._ids[modality] = np.concatenate([self._ids[modality], ids[record_modality == modality]])
        self._candidates.extend(records)
        return ids.tolist()

    def set_search_parameters(self, parameters: str) -> None:
        """FAISS search-time knobs for approximate indexes, e.g. ``"nprobe=32"`` (IVF) or ``"efSearch=128"`` (HNSW)."""
        space = faiss.ParameterSpace()
        for index in self._indexes.values():
            try:
                space.set_index_parameters(index, parameters)
            except RuntimeError as error:  # FAISS's own message, e.g. "could not set parameter nprobe"
                raise ValueError(f"search parameters {parameters!r} do not apply to this {self.factory!r} index "
                                 f"({str(error).strip().splitlines()[-1]})") from error
        self.search_parameters = parameters

    # ------------------------------------------------------------------------------------------------ querying
    def __len__(self) -> int:
        return len(self._candidates)

    def __getitem__(self, candidate_id: int) -> Candidate:
        return self._candidates[candidate_id]

    @property
    def counts(self) -> dict[str, int]:
        """Number of candidates per modality."""
        return {m: int(len(self._ids[m])) for m in RESPONSE_MODALITIES}

    def search(
        self, dialogues: Sequence[Any], k: int = 10, *, modality: SearchModality = "auto", batch_size: int = 32
    ) -> list[list[RetrievalHit]]:
        """Top-``k`` candidates for each dialogue (a list of turns: strings or turn dicts), best first.

        Dialogues are encoded ``batch_size`` at a time in the index's ``precision``.
        """
        if self.model is None:
            raise RuntimeError("this index has no model: pass model= and processor= to ResponseIndex.load, or bind()")
        if isinstance(dialogues, str) or (dialogues and not isinstance(dialogues[0], (list, tuple))):
            raise TypeError("search takes a list of dialogues (each a list of turns); wrap a single dialogue in [...]")
        info = self.model_info
        with_intent = modality == "auto" and info is not None and info.has_intent_head
        _check_precision(self.precision)
        queries, intents = [], []
        # Chunks of many batches: the length buckets need rows to sort, and only one chunk of dialogues has its
        # image files opened at a time.
        chunk = _BATCHES_PER_CHUNK * batch_size
        with eval_mode(self.model):
            for start in range(0, len(dialogues), chunk):
                q, intent = encode_dialogues(self.model, self.processor, dialogues[start : start + chunk],
                                             with_intent, batch_size, self.precision)
                queries.append(q)
                intents.append(intent)
        if not queries:
            return []
        intent_logits = np.concatenate(intents) if with_intent else None
        return self.search_embeddings(np.concatenate(queries), k, modality=modality, intent_logits=intent_logits)

    def search_embeddings(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        modality: SearchModality = "auto",
        intent_logits: np.ndarray | None = None,
    ) -> list[list[RetrievalHit]]:
        """Search with query embeddings: (B, 2, D) per-modality queries as ``encode_context`` returns, or (B, D)."""
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 2:
            queries = queries[:, None, :]
        if queries.ndim != 3 or queries.shape[-1] != self.dim:
            raise ValueError(f"model/index mismatch: queries of shape {queries.shape}, index holds {self.dim}-dim")
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        pools = select_pools(len(queries), modality, intent_logits, self._joint())
        top_scores, top_ids = search_pools(self._indexes, self._ids, queries, pools, k)
        candidates = self._candidates
        return [
            [RetrievalHit(i, s, candidates[i].modality, candidates[i]) for s, i in zip(row_s, row_i) if i >= 0]
            for row_s, row_i in zip(top_scores, top_ids)
        ]

    def _joint(self) -> bool:
        return self.model_info is None or self.model_info.joint_response_pool

    # ------------------------------------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write the index to ``directory`` atomically (FAISS format + JSON + Parquet, no pickle)."""
        config = {
            "library": "hf_dialret",
            "library_version": __version__,
            "dim": self.dim,
            "factory": self.factory,
            "metric": "inner_product",
            "normalized": True,
            "search_parameters": self.search_parameters,
            "precision": self.precision,
            "counts": self.counts,
            "model": asdict(self.model_info) if self.model_info is not None else None,
            "probe_embedding": self._probe.tolist() if self._probe is not None else None,
        }
        atomic_write_dir(directory, lambda tmp: write_index_files(tmp, config, self._candidates, self._indexes))

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        model: Any = None,
        processor: Any = None,
        *,
        check_model: bool = True,
        precision: Precision | None = None,
    ) -> ResponseIndex:
        """Read an index saved by :meth:`save`; with ``model`` and ``processor``, bind them (see :meth:`bind`).

        ``precision`` of new encodings: by default the one the index was saved with (``"auto"`` for indexes saved
        before it was recorded), so queries are encoded like the candidates were.
        """
        config, candidates, sub_indexes = read_index_files(directory)
        with reading(Path(directory), CONFIG_NAME):
            info = ModelIdentity(**config["model"]) if config.get("model") else None
            index = cls(int(config["dim"]), config["factory"], model_info=info)
        index.precision = _check_precision(precision or config.get("precision") or "auto")  # type: ignore[assignment]
        if config.get("probe_embedding") is not None:
            index._probe = np.asarray(config["probe_embedding"], dtype=np.float32)
        index._candidates = candidates
        modality_of = np.array([c.modality for c in candidates], dtype=object)
        for name in RESPONSE_MODALITIES:
            index._ids[name] = np.flatnonzero(modality_of == name).astype(np.int64)
            sub = sub_indexes.get(name)
            if sub is None:
                if len(index._ids[name]):
                    raise ValueError(f"{directory}: {len(index._ids[name])} {name} candidates but no {name}.faiss")
                continue
            if sub.d != index.dim or sub.metric_type != faiss.METRIC_INNER_PRODUCT:
                raise ValueError(f"{directory}: {name}.faiss is not a {index.dim}-dim inner-product index")
            if sub.ntotal != len(index._ids[name]):
                raise ValueError(
                    f"{directory}: {name}.faiss holds {sub.ntotal} vectors for {len(index._ids[name])} candidates"
                )
            index._indexes[name] = sub
        if config.get("search_parameters"):
            index.set_search_parameters(config["search_parameters"])
        if model is not None:
            if processor is None:
                raise ValueError("pass the model's processor together with the model")
            index.bind(model, processor, check=check_model)
        return index

    def __repr__(self) -> str:
        arch = self.model_info.architecture if self.model_info else "no model"
        return f"ResponseIndex(dim={self.dim}, factory={self.factory!r}, counts={self.counts}, built_with={arch})"
