"""Evaluation protocols on hand-made embeddings, and candidate pools built from unified datasets."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from hf_dialret.data.schema import image_response, text_response, unified_features, write_dataset
from hf_dialret.training.evaluation import (
    flatten_report,
    intent_metrics,
    retrieval_report,
    shared_pool_scores,
    stack_per_query_pools,
)
from hf_dialret.training.pools import build_shared_pool, example_pool, has_candidate_pools

# Candidates: t0, t1 (text), i0, i1 (image), all unit vectors.
CANDIDATES = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.8, 0.0]])
CANDIDATE_MODALITY = torch.tensor([0, 0, 1, 1])
# Queries (one vector for both modalities, as MDR): A -> t0, B -> t1, C -> i0.
QUERIES = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.8, 0.6, 0.0]])
QUERY_MODALITY = torch.tensor([0, 0, 1])
QUERY_TARGET = torch.tensor([0, 1, 2])


def _scores() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    context = torch.stack([QUERIES, QUERIES], dim=1)
    return shared_pool_scores(context, QUERY_MODALITY, QUERY_TARGET, CANDIDATES, CANDIDATE_MODALITY, torch.arange(4))


def test_joint_pool_protocols_by_hand() -> None:
    # A: t0 first -> rank 1. B: i1 (1.0) above t1 (0.8) -> joint rank 2, text-pool rank 1.
    # C: t0 .8, t1 .6, i1 .96 all above i0 (0) -> joint rank 4, image-pool rank 2.
    report = retrieval_report(*_scores(), QUERY_MODALITY, joint_response_pool=True, ks=(1, 2))
    assert report["text_retrieval"]["recall@1"] == 1.0 and report["text_retrieval"]["num_queries"] == 2
    assert report["image_retrieval"]["recall@1"] == 0.0 and report["image_retrieval"]["mean_rank"] == 2.0
    multimodal = report["multimodal"]
    assert multimodal["overall"]["mean_rank"] == pytest.approx((1 + 2 + 4) / 3)
    assert multimodal["overall"]["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)
    assert multimodal["text"]["recall@1"] == 0.5 and multimodal["text"]["recall@2"] == 1.0
    assert multimodal["image"]["mean_rank"] == 4.0
    assert report["multimodal_oracle_intent"]["overall"]["mean_rank"] == pytest.approx((1 + 1 + 2) / 3)
    # Implicit intent of a joint model = modality of its top candidate: t0 (right), i1 (wrong), i1 (right).
    assert report["intent"]["accuracy"] == pytest.approx(2 / 3)
    assert report["intent"]["source"] == "modality of the top-ranked candidate"


def test_predicted_intent_wrong_intent_is_a_miss() -> None:
    intent_logits = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.5, 0.0]])  # all "text"; C is really an image query
    report = retrieval_report(*_scores(), QUERY_MODALITY, intent_logits=intent_logits, joint_response_pool=False, ks=(1, 2))
    assert report["multimodal"]["text"]["recall@1"] == 1.0  # B searched only the text pool: rank 1
    assert report["multimodal"]["image"]["mean_rank"] == 4.0  # C: wrong intent, ranks last in the pool of 4
    assert report["multimodal"]["image"]["recall@2"] == 0.0
    assert report["intent"]["accuracy"] == pytest.approx(2 / 3)
    assert report["intent"]["f1_text"] == pytest.approx(0.8) and report["intent"]["f1_image"] == 0.0
    assert report["intent"]["macro_f1"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="intent_logits"):
        retrieval_report(*_scores(), QUERY_MODALITY, joint_response_pool=False)


def test_per_modality_query_embeddings_are_used() -> None:
    """DR/SDR-style queries: the text query scores text candidates, the image query scores images."""
    text_query, image_query = torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    context = torch.stack([text_query, image_query], dim=1)
    scores, _, _ = shared_pool_scores(context, torch.tensor([1]), torch.tensor([2]), CANDIDATES, CANDIDATE_MODALITY, torch.arange(4))
    assert scores.tolist() == [[0.0, 1.0, 1.0, 0.0]]


def test_duplicates_count_as_correct() -> None:
    pool = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # candidates 1 and 2 are the same text (id 7)
    context = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    scores, positives, modality = shared_pool_scores(
        context, torch.tensor([0]), torch.tensor([7]), pool, torch.tensor([0, 0, 0]), torch.tensor([3, 7, 7])
    )
    assert positives.tolist() == [[False, True, True]]
    assert retrieval_report(scores, positives, modality, torch.tensor([0]), ks=(1,))["multimodal"]["overall"]["recall@1"] == 1.0
    with pytest.raises(ValueError, match="no positive"):
        shared_pool_scores(context, torch.tensor([0]), torch.tensor([9]), pool, torch.tensor([0, 0, 0]), torch.tensor([3, 7, 7]))


def test_per_query_pools_padding_does_not_change_ranks() -> None:
    rows = [
        (torch.tensor([0.1, 0.5, 0.3]), torch.tensor([True, False, False]), torch.tensor([1, 0, 1])),
        (torch.tensor([0.9, 0.2, 0.1, 0.4, 0.0]), torch.tensor([True, False, False, False, False]), torch.tensor([0, 0, 0, 1, 1])),
    ]
    scores, positives, modality = stack_per_query_pools(rows, width=7)
    assert scores.shape == (2, 7)
    # Query 0 is an image query predicted "text": a miss ranking last among its own 3 candidates, not 7.
    report = retrieval_report(
        scores, positives, modality, torch.tensor([1, 0]), intent_logits=torch.tensor([[1.0, 0.0], [1.0, 0.0]]),
        joint_response_pool=False, ks=(1,),
    )
    assert report["multimodal"]["image"]["mean_rank"] == 3.0
    assert report["multimodal"]["text"]["mean_rank"] == 1.0
    joint = retrieval_report(scores, positives, modality, torch.tensor([1, 0]), ks=(1,))
    assert joint["multimodal"]["image"]["mean_rank"] == 3.0  # 0.5 and 0.3 above 0.1; padding never counts
    assert joint["image_retrieval"]["mean_rank"] == 2.0  # image pool: 0.3 above 0.1
    with pytest.raises(ValueError, match="pool width"):
        stack_per_query_pools(rows, width=4)


def test_intent_metrics_and_flatten() -> None:
    metrics = intent_metrics(torch.tensor([0, 1, 1, 1]), torch.tensor([0, 1, 0, 1]))
    assert metrics["accuracy"] == 0.75 and metrics["precision_image"] == pytest.approx(2 / 3)
    assert metrics["recall_text"] == 0.5 and metrics["f1_image"] == pytest.approx(0.8)
    flat = flatten_report({"multimodal": {"overall": {"recall@1": 0.5}, "protocol": "joint pool"}}, "eval")
    assert flat == {"eval_multimodal_overall_recall@1": 0.5}


def _dataset(with_candidates: bool):
    image = Image.new("RGB", (8, 8), "red")
    rows = [
        {"response": text_response("Hi  there"), "candidates": {"texts": ["hi there", "bye"], "images": [image]}},
        {"response": image_response(image, "photo-1"), "candidates": {"texts": ["x"], "images": [image, image]}},
        {"response": text_response("hi there"), "candidates": {"texts": [], "images": []}},
        {"response": image_response(image, "photo-1"), "candidates": {"texts": [], "images": []}},
    ]
    for index, row in enumerate(rows):
        row.update(dialogue_id=str(index), context=[{"speaker": "a", "text": "hello", "image": None}])
        if not with_candidates:
            del row["candidates"]
    return write_dataset(rows, unified_features(with_candidates=with_candidates))


def test_a_response_without_id_is_named_by_its_row() -> None:
    rows = _dataset(with_candidates=False).to_list()
    rows[2]["response"]["id"] = None
    with pytest.raises(ValueError, match=r"evaluation dataset, row 2: field `response.id` is missing"):
        build_shared_pool(write_dataset(rows, unified_features()))


def test_shared_pool_deduplicates_by_modality_and_id() -> None:
    dataset = _dataset(with_candidates=False)
    pool = build_shared_pool(dataset)
    assert pool.rows == [0, 1] and pool.modality.tolist() == [0, 1]
    assert pool.query_candidate.tolist() == [0, 1, 0, 1]
    assert not has_candidate_pools(dataset)
    assert build_shared_pool(dataset.select([3, 2])).query_candidate.tolist() == [0, 1]


def test_example_pool_marks_duplicate_texts() -> None:
    dataset = _dataset(with_candidates=True)
    assert has_candidate_pools(dataset)
    pool, modality, positives = example_pool(dataset[0])
    assert len(pool) == 4 and modality.tolist() == [0, 0, 0, 1]
    assert positives.tolist() == [True, True, False, False]  # "hi there" duplicates the true reply
    _, modality, positives = example_pool(dataset[1])
    assert modality.tolist() == [1, 0, 1, 1] and positives.tolist() == [True, False, False, False]
