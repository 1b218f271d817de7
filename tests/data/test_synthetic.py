"""The synthetic corpus: determinism, balance, label consistency, held-out combinations, hardness, vocabulary."""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest

from hf_dialret.data import (
    generate_dialogue, make_synthetic_corpus, synthetic_ground_truth, synthetic_vocabulary, tokenize_words)
from hf_dialret.data.synthetic import ATTRIBUTES, IMAGE_REQUESTS, OFFER_ACCEPTED, QUESTIONS, _dialogue_rng
from hf_dialret.data.synthetic_render import (
    BACKGROUNDS, COLOUR_NAMES, COLOURS, COUNT_WORDS, SHAPE_NAMES, Picture, canonical_png, is_held_out,
    render_picture)


@pytest.fixture(scope="module")
def corpus():
    return make_synthetic_corpus(1500, seed=7, num_validation_dialogues=50, num_test_dialogues=2000)


def rows(dataset) -> list[dict]:
    return dataset.with_format("arrow")[:].to_pylist()  # undecoded: image bytes, fast


def test_same_seed_same_rows_and_bytes(corpus):
    again = make_synthetic_corpus(1500, seed=7, num_validation_dialogues=50, num_test_dialogues=2000)
    for split in ("train", "validation", "test"):
        assert corpus[split].data.table.equals(again[split].data.table)
    other = make_synthetic_corpus(200, seed=8, num_validation_dialogues=0, num_test_dialogues=0)
    assert rows(other["train"]) != rows(corpus["train"])[:200]
    prefix = make_synthetic_corpus(200, seed=7, num_validation_dialogues=0, num_test_dialogues=0)
    assert rows(prefix["train"]) == rows(corpus["train"])[:200]  # dialogue i does not depend on the corpus size


def test_intents_are_balanced_and_turn_counts_bounded(corpus):
    for split in ("train", "test"):
        data = rows(corpus[split])
        share = sum(r["response"]["modality"] == "image" for r in data) / len(data)
        assert 0.40 <= share <= 0.50, share
        assert all(3 <= len(r["context"]) <= 7 for r in data)
        assert all(r["response"]["image"] is None for r in data if r["response"]["modality"] == "text")


def test_test_pool_is_large_and_mixed():
    test = rows(make_synthetic_corpus(0, seed=0, num_validation_dialogues=0)["test"])
    pool = collections.Counter(r["response"]["modality"] for r in {(r["response"]["modality"], r["response"]["id"]):
                                                                     r for r in test}.values())
    assert pool["image"] >= 400 and pool["text"] >= 600 and sum(pool.values()) >= 1000


def test_generated_labels_are_consistent():
    for index in range(600):
        d = generate_dialogue(_dialogue_rng(3, "test", index), image_fraction=0.45, avoid_held_out=False)
        # the reference picks the target and only the target
        assert d.reference.matches(d.target) and not d.reference.matches(d.distractor)
        shared = sum(d.target.value(a) == d.distractor.value(a) for a in ATTRIBUTES)
        assert 1 <= shared <= 3 and d.target.thing != d.distractor.thing
        last = d.turns[-1][1]
        if d.intent == "image":
            assert d.reply is None
            # a request to see it, or a yes to A's offer of a photo in the turn before
            assert any(w in last for w in ("show", "see", "photo", "picture", "pic")) or (
                last.startswith(("yes", "sure")) and ("photo" in d.turns[-2][1] or "picture" in d.turns[-2][1]))
        else:
            assert d.target.thing in d.reply or d.target.picture.colour in d.reply or \
                d.target.picture.background in d.reply
            assert not any(w in last for w in ("show", "photo", "picture", "pic", "yes", "sure"))
        context = " ".join(text for _, text in d.turns)
        for item in (d.target, d.distractor):  # both things are fully described in the context
            assert item.thing in context and item.picture.colour in context and item.picture.background in context


def test_picture_responses_show_the_requested_attributes(corpus):
    data = rows(corpus["test"])
    pictures = [r for r in data if r["response"]["modality"] == "image"]
    for r in pictures[:200]:  # evaluation pictures are the canonical rendering of their id
        assert r["response"]["image"]["bytes"] == canonical_png(Picture.from_key(r["response"]["id"]), 48)
    for index, r in enumerate(rows(corpus["train"])[:300]):
        d = synthetic_ground_truth("train", index, seed=7)
        assert r["context"][-1]["text"] == d.turns[-1][1]
        if d.intent == "image":
            assert r["response"]["id"] == d.target.picture.key
        else:
            assert r["response"]["text"] == d.reply


def test_ground_truth_regenerates_the_rows_of_every_split(corpus):
    for split in ("train", "validation", "test"):
        data = rows(corpus[split])[:150]
        for index, row in enumerate(data):
            d = synthetic_ground_truth(split, index, seed=7)
            assert [(t["speaker"], t["text"]) for t in row["context"]] == d.turns
            expected = d.target.picture.key if d.intent == "image" else d.reply
            assert row["response"]["id" if d.intent == "image" else "text"] == expected
        assert {synthetic_ground_truth(split, i, seed=7).intent for i in range(len(data))} == {"text", "image"}
    # another seed, other dialogues
    assert synthetic_ground_truth("test", 0, seed=8).turns != synthetic_ground_truth("test", 0, seed=7).turns
    with pytest.raises(ValueError, match="unknown split 'dev'.*train, validation, test"):
        synthetic_ground_truth("dev", 0)


def components(mask: np.ndarray) -> int:
    """Number of 4-connected regions of ``mask`` (flood fill; pictures are 48x48)."""
    seen = np.zeros_like(mask, dtype=bool)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        count += 1
        stack = [start]
        seen[start] = True
        while stack:
            y, x = stack.pop()
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
    return count


@pytest.mark.parametrize("jitter", [False, True])
def test_rendering_has_the_right_colour_count_and_background(jitter):
    rng = random.Random(0) if jitter else None
    for colour in COLOUR_NAMES:
        for shape in SHAPE_NAMES:
            for count in (1, 2, 3):
                picture = Picture(colour, shape, count, ("snow", "sand", "stone", "night")[count])
                pixels = np.asarray(render_picture(picture, 48, rng)).astype(int)
                background = np.array(BACKGROUNDS[picture.background])
                mask = np.abs(pixels - background).sum(-1) > 60
                found = components(mask)
                if not jitter:
                    assert found == count, (picture, found)
                mean = pixels[mask].mean(0)
                nearest = min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - mean).sum())
                assert nearest == colour, (picture, mean)
                corner = pixels[0, 0]
                assert np.abs(corner - background).sum() < 40


def test_held_out_pairs_never_in_training_pictures(corpus):
    held = {(c, s) for c in COLOUR_NAMES for s in SHAPE_NAMES if is_held_out(c, s)}
    assert len(held) == 12
    assert {s for _, s in held} == set(SHAPE_NAMES)  # every shape keeps colours seen in training
    trained = {Picture.from_key(r["response"]["id"]) for r in rows(corpus["train"])
               if r["response"]["modality"] == "image"}
    assert not any(is_held_out(p.colour, p.shape) for p in trained)
    assert {p.colour for p in trained} == set(COLOUR_NAMES) and {p.shape for p in trained} == set(SHAPE_NAMES)
    tested = [Picture.from_key(r["response"]["id"]) for r in rows(corpus["test"])
              if r["response"]["modality"] == "image"]
    assert 0.15 < sum(is_held_out(p.colour, p.shape) for p in tested) / len(tested) < 0.35


def test_lexical_shortcuts_fail(corpus):
    """Bag-of-words baselines that know every picture's attributes stay near chance (distractors, negations)."""
    data = rows(corpus["test"])
    picture_ids = sorted({r["response"]["id"] for r in data if r["response"]["modality"] == "image"})
    text_ids = sorted({r["response"]["id"] for r in data if r["response"]["modality"] == "text"})
    plural = {s: w for s, w in zip(SHAPE_NAMES, ("circles", "squares", "triangles", "stars", "crosses", "diamonds"))}
    picture_words = {k: (lambda p: ({p.colour}, {p.background}, {COUNT_WORDS[p.count]}, {p.shape, plural[p.shape]}))(
        Picture.from_key(k)) for k in picture_ids}
    text_words = {k: set(tokenize_words(k)) for k in text_ids}
    hits = collections.Counter()
    total = collections.Counter()
    for r in data:
        words = {w for t in r["context"] for w in tokenize_words(t["text"])}
        modality = r["response"]["modality"]
        if modality == "image":  # number of the picture's attributes that the context mentions
            scores = {k: sum(bool(words & group) for group in groups) for k, groups in picture_words.items()}
        else:  # share of the reply's words found in the context
            scores = {k: len(words & w) / len(w) for k, w in text_words.items()}
        best = scores[r["response"]["id"]]
        total[modality] += 1
        hits[modality] += all(v < best for k, v in scores.items() if k != r["response"]["id"])  # ties are misses
    assert hits["image"] / total["image"] < 0.1 and hits["text"] / total["text"] < 0.1, (hits, total)


def test_vocabulary_covers_every_token(corpus, tiny_processor):
    vocabulary = set(synthetic_vocabulary())
    seen = set()
    for split in ("train", "test"):
        for r in rows(corpus[split]):
            for t in r["context"]:
                seen.update(tokenize_words(t["speaker"]))
                seen.update(tokenize_words(t["text"]))
            if r["response"]["text"]:
                seen.update(tokenize_words(r["response"]["text"]))
    assert seen <= vocabulary and len(vocabulary - seen) < 10
    tokenizer = tiny_processor.tokenizer
    sample = [t["text"] for r in rows(corpus["test"])[:300] for t in r["context"]]
    ids = tokenizer(sample)["input_ids"]
    assert all(tokenizer.unk_token_id not in row for row in ids)
    templates = [q for pairs in QUESTIONS.values() for q, _ in pairs] + IMAGE_REQUESTS + OFFER_ACCEPTED
    assert {w for t in templates for w in tokenize_words(t.replace("{ref}", " "))} <= vocabulary


def test_argument_checks():
    with pytest.raises(ValueError, match="image_fraction"):
        make_synthetic_corpus(10, image_fraction=1.5)
    with pytest.raises(ValueError, match="image_size"):
        make_synthetic_corpus(10, image_size=8)


def test_a_question_dialogue_is_the_same_at_a_lower_image_fraction() -> None:
    # The intent is each dialogue's first draw: lowering image_fraction only turns picture requests into questions,
    # so a text-only corpus (image_fraction=0) holds the default corpus's text dialogues unchanged.
    questions = 0
    for index in range(120):
        default = synthetic_ground_truth("test", index, seed=3)
        text_only = synthetic_ground_truth("test", index, seed=3, image_fraction=0.0)
        assert text_only.intent == "text" and text_only.reply
        if default.intent == "text":
            questions += 1
            assert text_only.turns == default.turns and text_only.reply == default.reply
            assert text_only.target == default.target
    assert 40 < questions < 100
    pictures_only = make_synthetic_corpus(30, seed=3, num_validation_dialogues=0, num_test_dialogues=30,
                                          image_fraction=1.0)["test"]
    assert {response["modality"] for response in pictures_only["response"]} == {"image"}
