"""Error analysis on the synthetic corpus: reference kinds, top-1 categories, and the summary over a test pool."""

from __future__ import annotations

import pytest

from hf_dialret.data import synthetic_ground_truth, tokenize_words
from hf_dialret.data.synthetic import QUESTIONS
from hf_dialret.data.synthetic_render import Picture
from hf_dialret.training.synthetic_errors import (
    CORRECT, REFERENCE_KINDS, classify_top1, is_picture_id, reference_kind, response_id, summarize_top1,
    synthetic_error_analysis, synthetic_test_pool)

DIALOGUES = [synthetic_ground_truth("test", index, seed=42) for index in range(120)]


def first(intent: str, kind: str | None = None):
    return next(d for d in DIALOGUES if d.intent == intent and kind in (None, reference_kind(d)))


def test_distractor_reply_is_the_same_answer_about_the_other_thing() -> None:
    same = 0
    for d in DIALOGUES:
        if d.intent == "image":
            assert d.distractor_reply is None
            continue
        answers = [a for pairs in QUESTIONS.values() for _, a in pairs if a.format(**d.target.slots()) == d.reply]
        assert d.distractor_reply in {a.format(**d.distractor.slots()) for a in answers}
        same += d.distractor_reply == d.reply  # a comment on attributes both things share
    assert same < 0.1 * sum(d.intent == "text" for d in DIALOGUES)


def test_reference_kinds_follow_the_request_wording() -> None:
    assert {reference_kind(d) for d in DIALOGUES} == set(REFERENCE_KINDS)
    for d in DIALOGUES:
        request = tokenize_words(d.turns[-1][1])
        kind = reference_kind(d)
        assert (kind == "thing") == (d.target.thing in request)  # only a thing reference names it
        assert (kind == "negated attribute") == ("not" in request or "without" in request)


def test_text_top1_categories() -> None:
    d = first("text")
    other_thing = next(t for t in ("mug", "tile", "kite", "bag") if t not in (d.target.thing, d.distractor.thing))
    assert classify_top1(d, d.reply) == CORRECT
    assert classify_top1(d, d.distractor_reply) == "the distractor's reply"
    assert classify_top1(d, f"i used red for the {d.distractor.thing}.") in (
        "the distractor's reply", "another reply naming the distractor's thing")
    assert classify_top1(d, f"the {d.target.thing} has a blue and a green background.") == \
        "another reply naming the target's thing"
    assert classify_top1(d, f"the {other_thing} has a sand background.") == "another reply naming neither thing"
    assert classify_top1(d, d.target.picture.key) == "a picture"


def test_image_top1_categories() -> None:
    d = first("image")
    target = d.target.picture
    assert classify_top1(d, target.key) == CORRECT
    assert classify_top1(d, d.distractor.picture.key) == "the distractor's picture"
    count = 1 + target.count % 3
    assert classify_top1(d, Picture(target.colour, target.shape, count, target.background).key) in (
        "another picture, 1 attribute off", "the distractor's picture")
    far = Picture("red" if target.colour != "red" else "blue", "circle" if target.shape != "circle" else "star",
                  count, "snow" if target.background != "snow" else "night")
    assert classify_top1(d, far.key) == "another picture, 4 attributes off"
    assert classify_top1(d, "a text reply.") == "a text reply"


def test_summary_of_an_oracle_and_of_a_model_that_always_picks_the_distractor() -> None:
    pool_ids, responses = synthetic_test_pool(DIALOGUES)
    assert len(pool_ids) == len(set(pool_ids)) == len(responses)
    assert {response_id(d) for d in DIALOGUES} == set(pool_ids)
    assert [is_picture_id(key) for key in pool_ids] == [not isinstance(r, str) for r in responses]
    oracle = summarize_top1(DIALOGUES, pool_ids, [pool_ids.index(response_id(d)) for d in DIALOGUES])
    for modality in ("text", "image"):
        assert oracle["recall_at_1"][modality]["all"] == 1.0
        assert oracle["top1"][modality] == {CORRECT: sum(oracle["queries"][modality].values())}

    # the distractor's response where the pool has it, else the true one
    ids = pool_ids + [d.distractor_reply or d.distractor.picture.key for d in DIALOGUES]
    distracted = summarize_top1(DIALOGUES, ids, [len(pool_ids) + i for i in range(len(DIALOGUES))])
    texts = [d for d in DIALOGUES if d.intent == "text"]
    alike = sum(d.distractor_reply == d.reply for d in texts)  # the same reply for both things counts as correct
    expected = {"the distractor's reply": len(texts) - alike, CORRECT: alike}
    assert distracted["top1"]["text"] == {category: n for category, n in expected.items() if n}
    assert distracted["recall_at_1"]["text"]["all"] == alike / len(texts)
    assert distracted["top1"]["image"] == {"the distractor's picture": sum(distracted["queries"]["image"].values())}
    assert all(r == 0.0 for r in distracted["recall_at_1"]["image"].values())
    with pytest.raises(ValueError, match="3 top-1 rows for 120 dialogues"):
        summarize_top1(DIALOGUES, pool_ids, [0, 1, 2])


def test_analysis_of_a_tiny_model_accounts_for_every_query(tiny_config, tiny_processor) -> None:
    import hf_dialret

    model = hf_dialret.MultimodalDualRetrieverModel(tiny_config(hf_dialret.MultimodalDualRetrieverConfig)).eval()
    report = synthetic_error_analysis(model, tiny_processor, seed=42, num_dialogues=40, batch_size=16)
    dialogues = DIALOGUES[:40]
    assert report["pool"] == {"texts": len({d.reply for d in dialogues if d.reply}),
                              "images": len({d.target.picture.key for d in dialogues if d.intent == "image"})}
    for modality in ("text", "image"):
        expected = sum(d.intent == modality for d in dialogues)
        assert sum(report["queries"][modality].values()) == expected
        assert sum(report["top1"][modality].values()) == expected
        assert report["recall_at_1"][modality]["all"] == pytest.approx(
            report["top1"][modality].get(CORRECT, 0) / expected)
