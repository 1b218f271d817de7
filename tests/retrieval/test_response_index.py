"""ResponseIndex: exact scores per the contract, DR/SDR two-step vs MDR joint pool, growth, candidates forms,
approximate factories, and clear errors."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from hf_dialret.retrieval import ResponseIndex
from hf_dialret.retrieval.encoding import ModelIdentity

from retrieval_helpers import DIALOGUES, TEXTS, image


def _reference_scores(model, processor, dialogues, responses):
    """Brute force per docs/internals.md: candidate of modality m scored with context_embeds[:, m]; candidates in
    the order of ``responses`` (ids of an index built from them in that order)."""
    with torch.inference_mode():
        batch = processor(dialogues=dialogues, responses=responses, return_tensors="pt")
        queries = model.encode_context(batch["input_ids"], batch["attention_mask"], batch.get("context_pixel_values"))
        cands = model.encode_responses(batch.get("response_input_ids"), batch.get("response_attention_mask"),
                                       batch.get("response_pixel_values"), batch["response_modality"])
    modality = batch["response_modality"]
    scores = torch.einsum("bmd,nd->bmn", queries, cands)
    return scores[:, modality, torch.arange(len(modality))].numpy(), modality.numpy()


def _assert_hits_match(hits, expected, modality, atol):
    for row, ref in zip(hits, expected):
        np.testing.assert_allclose([h.score for h in row], np.sort(ref)[::-1], atol=atol)
        assert [h.modality for h in row] == ["text" if modality[h.id] == 0 else "image" for h in row]
        np.testing.assert_allclose([h.score for h in row], ref[[h.id for h in row]], atol=atol)  # right ids


def test_mdr_joint_pool_matches_brute_force(mdr_model, tiny_processor):
    images = [image(1), image(2), image(3)]
    index = ResponseIndex.build(mdr_model, tiny_processor, texts=TEXTS, images=images, batch_size=3,
                                show_progress=False, precision="fp32")
    assert index.counts == {"text": len(TEXTS), "image": 3} and len(index) == 8
    hits = index.search(DIALOGUES, k=8)
    expected, modality = _reference_scores(mdr_model, tiny_processor, DIALOGUES, TEXTS + images)
    _assert_hits_match(hits, expected, modality, atol=1e-5)
    for row, ref in zip(hits, expected):
        assert [h.id for h in row] == list(np.argsort(-ref, kind="stable"))
        assert {h.modality for h in row} == {"text", "image"}  # one joint pool
    top = hits[0][0]
    assert top.value == (TEXTS[top.id] if top.modality == "text" else top.value)
    assert isinstance(index[5].load_image(), type(images[0]))


def test_bf16_index_is_close_to_fp32_brute_force(mdr_model, tiny_processor):
    """bf16 encoding (candidates and queries) on the tiny MDR: scores within bf16 rounding, the same top-1."""
    images = [image(1), image(2), image(3)]
    index = ResponseIndex.build(mdr_model, tiny_processor, texts=TEXTS, images=images, show_progress=False,
                                precision="bf16")
    hits = index.search(DIALOGUES, k=8)
    expected, modality = _reference_scores(mdr_model, tiny_processor, DIALOGUES, TEXTS + images)
    _assert_hits_match(hits, expected, modality, atol=2e-2)  # bf16 keeps 8 bits of mantissa: ~4e-3 per value
    assert [row[0].id for row in hits] == [int(np.argmax(ref)) for ref in expected]


def test_mixed_candidates_in_small_chunks_keep_their_ids(mdr_model, tiny_processor):
    """Texts and images interleaved, batch_size 2: images are encoded two at a time and texts in larger chunks, so
    the modalities are encoded out of arrival order; every id must still hold its own candidate's vector."""
    pool = [image(20), TEXTS[0], image(21), image(22), TEXTS[1], image(23), TEXTS[2], image(24), TEXTS[3]]
    index = ResponseIndex.build(mdr_model, tiny_processor, pool, batch_size=2, show_progress=False, precision="fp32")
    assert [c.modality for c in index._candidates] == ["text" if isinstance(c, str) else "image" for c in pool]
    expected, modality = _reference_scores(mdr_model, tiny_processor, DIALOGUES, pool)
    hits = index.search(DIALOGUES, k=len(pool), batch_size=2)
    _assert_hits_match(hits, expected, modality, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])  # these weights send every dialogue to the text (0) or image (1) pool
def test_sdr_two_step_search_matches_brute_force(make_model, tiny_processor, seed):
    """SDR: the intent head picks the pool (queries and intent from one forward), scores equal the brute force."""
    sdr = make_model("sdr", seed=seed)
    images = [image(1), image(2)]
    index = ResponseIndex.build(sdr, tiny_processor, texts=TEXTS, images=images, show_progress=False,
                                precision="fp32")
    expected, modality = _reference_scores(sdr, tiny_processor, DIALOGUES, TEXTS + images)
    with torch.inference_mode():
        batch = tiny_processor(dialogues=DIALOGUES, return_tensors="pt")
        predicted = sdr.predict_intent(batch["input_ids"], batch["attention_mask"]).argmax(-1).numpy()
    for row, ref, label in zip(index.search(DIALOGUES, k=10, batch_size=2), expected, predicted):
        pool = modality == label
        assert len(row) == int(pool.sum()) and all(modality[h.id] == label for h in row)
        np.testing.assert_allclose([h.score for h in row], np.sort(ref[pool])[::-1], atol=1e-5)


def test_precision_is_saved_and_can_be_overridden(mdr_model, tiny_processor, tmp_path):
    index = ResponseIndex.build(mdr_model, tiny_processor, texts=TEXTS[:2], show_progress=False, precision="fp32")
    index.save(tmp_path / "index")
    assert ResponseIndex.load(tmp_path / "index", mdr_model, tiny_processor).precision == "fp32"
    assert ResponseIndex.load(tmp_path / "index", precision="bf16").precision == "bf16"
    assert ResponseIndex(8).precision == "auto"
    with pytest.raises(ValueError, match="precision must be one of"):
        ResponseIndex.build(mdr_model, tiny_processor, texts=TEXTS[:2], show_progress=False, precision="fp16")


def test_dr_searches_the_predicted_modality(dr_model, tiny_processor, image_files):
    index = ResponseIndex.build(dr_model, tiny_processor, texts=TEXTS, images=image_files, show_progress=False)
    with torch.inference_mode():
        batch = tiny_processor(dialogues=DIALOGUES, return_tensors="pt")
        predicted = dr_model.predict_intent(batch["input_ids"], batch["attention_mask"]).argmax(-1).tolist()
    for hits, label in zip(index.search(DIALOGUES, k=10), predicted):
        assert {h.modality for h in hits} == {("text", "image")[label]}
        assert len(hits) == (len(TEXTS) if label == 0 else len(image_files))
    both = index.search(DIALOGUES, k=10, modality="both")
    assert all({h.modality for h in hits} == {"text", "image"} for hits in both)
    only_images = index.search(DIALOGUES, k=2, modality="image")
    assert all(h.modality == "image" and h.value in image_files for hits in only_images for h in hits)


def test_add_grows_the_index_and_is_all_or_nothing(mdr_model, tiny_processor, image_files, tmp_path):
    index = ResponseIndex.build(mdr_model, tiny_processor, texts=TEXTS[:2], show_progress=False)
    ids = index.add([TEXTS[2], Path(image_files[0]), {"image": image(7)}, {"modality": "text", "text": "no"}])
    assert ids == [2, 3, 4, 5] and index.counts == {"text": 4, "image": 2}
    assert index[3].image_path == image_files[0] and index[4].image_bytes.startswith(b"\x89PNG")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        index.add(["fine", Path(tmp_path / "missing.png")])
    assert len(index) == 6  # the valid "fine" before the bad file was not added either
    with pytest.raises(ValueError, match="empty text"):
        index.add(["   "])


def test_candidates_from_a_datasets_column(mdr_model, tiny_processor):
    import datasets

    ds = datasets.Dataset.from_dict({"text": TEXTS[:3], "image": [image(1), image(2), image(3)]},
                                    features=datasets.Features({"text": datasets.Value("string"),
                                                                "image": datasets.Image()}))
    index = ResponseIndex.build(mdr_model, tiny_processor, texts=ds["text"], images=ds["image"], show_progress=False)
    assert index.counts == {"text": 3, "image": 3}
    raw = ds.cast_column("image", datasets.Image(decode=False))  # {"bytes", "path"} cells
    index.add(raw["image"])
    assert index.counts["image"] == 6


def test_progress_bar_reports_encoding(mdr_model, tiny_processor, capsys):
    ResponseIndex.build(mdr_model, tiny_processor, texts=TEXTS, show_progress=True)
    assert "Encoding candidates" in capsys.readouterr().err


def test_search_embeddings_scores_each_candidate_with_its_modality_query():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((12, 8)).astype(np.float32)
    modality = ["text"] * 7 + ["image"] * 5
    index = ResponseIndex.from_embeddings(emb, [f"c{i}" for i in range(12)], modality=modality)
    queries = rng.standard_normal((4, 2, 8)).astype(np.float32)
    normed_q = queries / np.linalg.norm(queries, axis=-1, keepdims=True)
    normed_e = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
    expected = np.where(np.array(modality) == "text", normed_q[:, 0] @ normed_e.T, normed_q[:, 1] @ normed_e.T)
    for row, ref in zip(index.search_embeddings(queries, k=5), expected):
        assert [h.id for h in row] == list(np.argsort(-ref, kind="stable")[:5])
        np.testing.assert_allclose([h.score for h in row], np.sort(ref)[::-1][:5], atol=1e-5)
    assert len(index.search_embeddings(queries[:1], k=50)[0]) == 12  # k above the pool size: no padding hits
    intent = np.array([[5.0, 0.0], [0.0, 5.0], [1.0, 0.0], [0.0, 1.0]])
    two_step = ResponseIndex.from_embeddings(emb, modality=modality)
    two_step.model_info = ModelIdentity("DualRetrieverModel", "dialret_dual_retriever", 8, False, True, None)
    picked = two_step.search_embeddings(queries, k=3, intent_logits=intent)
    assert [{h.modality for h in row} for row in picked] == [{"text"}, {"image"}, {"text"}, {"image"}]
    with pytest.raises(ValueError, match="intent_logits"):
        two_step.search_embeddings(queries, k=3)


def _clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, dim))
    return (centers[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)


@pytest.mark.parametrize(("factory", "params", "min_recall"), [
    ("IVF16,Flat", "nprobe=16", 1.0),  # every list probed: exact
    ("HNSW16", "efSearch=256", 0.95),
    ("IVF8,PQ4", "nprobe=8", 0.3),  # 4-byte codes of 16-dim vectors: coarse, but far above chance (10/3000)
])
def test_approximate_factories_train_and_recall(factory, params, min_recall):
    data, queries = _clustered(3000, 16), _clustered(50, 16, seed=1)
    exact = ResponseIndex.from_embeddings(data)
    approx = ResponseIndex.from_embeddings(data, factory=factory)
    approx.set_search_parameters(params)
    if "PQ" in factory:  # FAISS's slow polysemous training is switched off (search never uses it)
        assert not faiss.downcast_index(faiss.extract_index_ivf(approx._indexes["text"])).do_polysemous_training
    truth = [{h.id for h in row} for row in exact.search_embeddings(queries, k=10)]
    found = [{h.id for h in row} for row in approx.search_embeddings(queries, k=10)]
    assert np.mean([len(f & t) / 10 for f, t in zip(found, truth)]) >= min_recall


def test_a_failed_training_adds_nothing():
    index = ResponseIndex(16, "IVF32,Flat")
    data = _clustered(2000, 16)
    with pytest.raises(ValueError, match="image candidates"):  # enough texts to train, too few images
        index.add_embeddings(data[:1010], modality=["text"] * 1000 + ["image"] * 10)
    assert len(index) == 0 and index.counts == {"text": 0, "image": 0}
    assert all(sub.ntotal == 0 for sub in index._indexes.values())


def test_factory_errors_are_clear():
    with pytest.raises(ValueError, match="invalid FAISS factory string 'Bogus'"):
        ResponseIndex(8, "Bogus")
    with pytest.raises(ValueError, match="use factory='Flat' for small pools"):
        ResponseIndex.from_embeddings(np.ones((5, 8), dtype=np.float32), factory="IVF64,Flat")
    with pytest.raises(ValueError, match=r"expected embeddings of shape \(N, 8\)"):
        ResponseIndex(8).add_embeddings(np.ones((2, 4)))
    with pytest.raises(RuntimeError, match="no model"):
        ResponseIndex(8).search([["hi"]])
    with pytest.raises(ValueError, match="modality must be"):
        ResponseIndex.from_embeddings(np.ones((2, 8))).search_embeddings(np.ones((1, 8)), modality="audio")


def test_search_rejects_a_single_dialogue(mdr_model, tiny_processor):
    index = ResponseIndex.build(mdr_model, tiny_processor, texts=TEXTS[:2], show_progress=False)
    with pytest.raises(TypeError, match="wrap a single dialogue"):
        index.search(["hello", "there"])
