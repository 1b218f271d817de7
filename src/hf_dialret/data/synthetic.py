"""The embedded synthetic corpus: dialogues about painted objects, with text and picture responses.

Generated deterministically from a seed with PIL, no download. Every dialogue is between ``A`` (who painted two
things) and ``B`` (a friend). ``A`` describes both things -- e.g. "the mug has two red stars on a sand background"
and "my kite shows two blue stars against a snow background" -- and ``B`` ends with a request that *refers* to one of
them, the **target**, in one of several ways: by the thing ("the mug"), by an attribute only the target has ("the
red one", "the one on the sand background") or by negating the other thing's attribute ("the one that is not blue").
The response (the example's label) is ``A``'s next turn:

* **image intent** (about 45 %): ``B`` asks to see it ("can you show me ...", or accepts ``A``'s offer of a photo):
  the response is a 48x48 picture of the target: ``count`` (1-3) ``shape`` (6) in ``colour`` (8) on ``background``
  (4), 576 pictures in all;
* **text intent**: ``B`` asks about an attribute of the target ("how many shapes are on the red one?", or declines the
  photo and asks) or comments on it; the reply states the target's attribute, worded after the question.

Why it is hard (and what a model must learn):

* **hard distractors**: the second thing shares 1-3 of the 4 picture attributes with the target, so every word of
  the target's description also describes pictures that are wrong; lexical matching ties (tested);
* **negation**: 3/8 of the references negate the distractor's attribute, and a quarter of the dialogues mention a
  colour that was *not* used ("no green this time though"); about half the dialogues contain a negation;
* **composition**: 12 of the 48 colour-shape pairs (:func:`~hf_dialret.data.synthetic_render.is_held_out`) never
  appear in a training picture, but do in validation/test, so the image encoder must compose colour and shape;
* **mixed intents**: one pool of texts and pictures; the intent is predictable from the last turns only;
* **varied wording**: several templates for every turn; a reply's wording follows its question's, so it is
  learnable (ceiling 1.0) but not a fixed string.

Training pictures are jittered (position, size, colour); evaluation pictures use the canonical layout, so identical
attributes give identical bytes and the test pool deduplicates exactly. ``response.id`` of a picture is its attribute
key (``synthetic/red-star-2-sand``); of a text its normalised string.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

import datasets

from .schema import image_response, text_response, text_turn, unified_features, write_dataset
from .synthetic_render import (
    BACKGROUND_NAMES,
    COLOUR_NAMES,
    COUNT_WORDS,
    SHAPE_NAMES,
    SHAPES,
    Picture,
    canonical_png,
    is_held_out,
    png_bytes,
    render_picture,
)

SHARER, FRIEND = "A", "B"
THINGS = ("mug", "tile", "poster", "card", "kite", "shirt", "bag", "plate", "canvas", "notebook")
ATTRIBUTES = ("colour", "shape", "count", "background")

OPENERS: list[list[tuple[str, str]]] = [
    [],
    [(FRIEND, "hey, what have you been up to?")],
    [(FRIEND, "hi! how was your weekend?"), (SHARER, "great, i spent it painting.")],
    [(SHARER, "guess what, i finished my art project!"), (FRIEND, "oh nice, tell me about it.")],
    [(FRIEND, "did you go to the craft class?"), (SHARER, "yes, and i made a few things.")],
    [(SHARER, "hello! i have been busy decorating stuff.")],
]
DESCRIPTIONS = [
    "the {thing} has {n} {colour} {shapes} on a {bg} background",
    "on the {thing} i painted {n} {colour} {shapes} over a {bg} background",
    "my {thing} shows {n} {colour} {shapes} against a {bg} background",
]
ONE_TURN = "i made two things. {first}, and {second}."
TWO_TURNS = ("{first}.", "also, {second}.")
UNUSED_COLOUR = [" no {colour} this time though.", " i did not use any {colour} at all."]
REACTIONS = ["wow, that sounds lovely.", "nice, you are so creative!", "cool, i like the colours.",
             "sounds like a lot of work."]
# reference to the target: (attribute or "thing", negated) -> phrase; negated phrases name the *distractor's* value
REFERENCES: dict[tuple[str, bool], str] = {
    ("thing", False): "the {thing}",
    ("colour", False): "the {colour} one",
    ("shape", False): "the one with the {plural}",
    ("count", False): "the one with {count_ref}",
    ("background", False): "the one on the {bg} background",
    ("colour", True): "the one that is not {colour}",
    ("shape", True): "the one without {plural}",
    ("count", True): "the one that does not have {count_ref}",
    ("background", True): "the one not on the {bg} background",
}
COUNT_REFS = {1: "just one shape", 2: "two shapes", 3: "three shapes"}
IMAGE_REQUESTS = ["can you show me {ref}?", "send me a photo of {ref}, please!", "i would love to see {ref}.",
                  "post a picture of {ref}!", "let me see a pic of {ref}."]
OFFERS = ["do you want to see a picture of one?", "i can send you a photo if you like."]
OFFER_ACCEPTED = ["yes please, {ref}!", "sure, show me {ref}."]
OFFER_DECLINED = "no thanks. but {question}"
# asked attribute -> (question, reply) pairs; the reply's wording is tied to the question's
QUESTIONS: dict[str, list[tuple[str, str]]] = {
    "colour": [("what colour did you use for {ref}?", "i used {colour} for the {thing}."),
               ("which colour are the shapes on {ref}?", "the {shapes} on the {thing} are {colour}."),
               ("remind me, what colour is {ref}?", "{colour}, that is the {thing} i like most.")],
    "shape": [("what shapes are on {ref}?", "the {thing} has {plural} on it."),
              ("which shape did you paint on {ref}?", "i painted {plural} on the {thing}."),
              ("tell me, what did you draw on {ref}?", "{colour} {plural}, on the {thing}.")],
    "count": [("how many shapes are on {ref}?", "the {thing} has {n} of them."),
              ("how many did you paint on {ref}?", "{n} {colour} ones on the {thing}."),
              ("tell me how many shapes {ref} has.", "there are {n} {shapes} on the {thing}.")],
    "background": [("what background does {ref} have?", "the {thing} has a {bg} background."),
                   ("which background did you choose for {ref}?", "i chose {bg} for the {thing}."),
                   ("what is behind the shapes on {ref}?", "a {bg} background, behind the {plural}.")],
    "comment": [("i really like {ref}.", "thanks! {colour} {plural} are my favourite."),
                ("{ref} sounds great.", "thank you, the {bg} background on the {thing} was hard.")],
}
SPLIT_SIZES = {"validation": 1000, "test": 2000}
#: Default share of dialogues that end with a picture request (the rest end with a question).
DEFAULT_IMAGE_FRACTION = 0.45
_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


@dataclass(frozen=True)
class Item:
    """One painted thing: a picture's attributes plus the (unrendered) thing it is painted on."""

    picture: Picture
    thing: str

    def value(self, attribute: str) -> object:
        return self.thing if attribute == "thing" else getattr(self.picture, attribute)

    def slots(self) -> dict[str, object]:
        p = self.picture
        return {"thing": self.thing, "colour": p.colour, "plural": SHAPES[p.shape], "n": COUNT_WORDS[p.count],
                "shapes": p.shape if p.count == 1 else SHAPES[p.shape], "bg": p.background,
                "count_ref": COUNT_REFS[p.count]}


@dataclass(frozen=True)
class Reference:
    """How ``B`` refers to the target: by ``attribute`` having ``value``, or (``negated``) not having it."""

    attribute: str
    value: object
    negated: bool

    def matches(self, item: Item) -> bool:
        return (item.value(self.attribute) == self.value) != self.negated


@dataclass(frozen=True)
class SyntheticDialogue:
    """One generated dialogue with its ground truth (kept for tests and analysis, not stored in the dataset)."""

    turns: list[tuple[str, str]]
    target: Item
    distractor: Item
    reference: Reference
    intent: str  # "image" or "text"
    reply: str | None  # the text response, None for image intent
    #: the reply the same question gets about the distractor (None for image intent): a reference resolved to the
    #: wrong thing retrieves this one (docs/training.md, "Where the errors are")
    distractor_reply: str | None = None


def _pick_items(rng: random.Random, avoid_held_out: bool) -> tuple[Item, Item]:
    while True:
        target = Picture(rng.choice(COLOUR_NAMES), rng.choice(SHAPE_NAMES), rng.randint(1, 3),
                         rng.choice(BACKGROUND_NAMES))
        if not (avoid_held_out and is_held_out(target.colour, target.shape)):
            break
    differ = rng.sample(ATTRIBUTES, rng.randint(1, 3))  # the distractor shares the other 1-3 attributes
    values = {"colour": COLOUR_NAMES, "shape": SHAPE_NAMES, "count": (1, 2, 3), "background": BACKGROUND_NAMES}
    changes = {a: rng.choice([v for v in values[a] if v != getattr(target, a)]) for a in differ}
    distractor = Picture(**{a: changes.get(a, getattr(target, a)) for a in ATTRIBUTES})
    thing_t, thing_d = rng.sample(THINGS, 2)
    return Item(target, thing_t), Item(distractor, thing_d)


def _reference(rng: random.Random, target: Item, distractor: Item) -> Reference:
    differing = [a for a in ATTRIBUTES if target.value(a) != distractor.value(a)]
    if rng.random() < 0.25:
        return Reference("thing", target.thing, False)
    attribute = rng.choice(differing)
    if rng.random() < 0.5:
        return Reference(attribute, distractor.value(attribute), True)
    return Reference(attribute, target.value(attribute), False)


def _reference_phrase(reference: Reference, target: Item, distractor: Item) -> str:
    named = distractor if reference.negated else target
    return REFERENCES[(reference.attribute, reference.negated)].format(**named.slots())


def generate_dialogue(rng: random.Random, image_fraction: float, avoid_held_out: bool) -> SyntheticDialogue:
    """Generate one dialogue; ``avoid_held_out`` keeps held-out colour-shape pairs out of picture responses."""
    intent = "image" if rng.random() < image_fraction else "text"
    target, distractor = _pick_items(rng, avoid_held_out and intent == "image")
    reference = _reference(rng, target, distractor)
    ref = _reference_phrase(reference, target, distractor)
    turns = list(rng.choice(OPENERS))
    first, second = (target, distractor) if rng.random() < 0.5 else (distractor, target)
    first_text = rng.choice(DESCRIPTIONS).format(**first.slots())
    second_text = rng.choice(DESCRIPTIONS).format(**second.slots())
    if rng.random() < 0.5:
        described = [ONE_TURN.format(first=first_text, second=second_text)]
    else:
        described = [TWO_TURNS[0].format(first=first_text), TWO_TURNS[1].format(second=second_text)]
    if rng.random() < 0.25:  # a colour mentioned only to be denied: a lexical trap for bag-of-words matching
        unused = rng.choice([c for c in COLOUR_NAMES if c not in (target.picture.colour, distractor.picture.colour)])
        described[-1] += rng.choice(UNUSED_COLOUR).format(colour=unused)
    turns += [(SHARER, text) for text in described]
    if rng.random() < 0.4 or len(turns) < 2:
        turns.append((FRIEND, rng.choice(REACTIONS)))
    offered = rng.random() < 0.3
    if offered:
        turns.append((SHARER, rng.choice(OFFERS)))
    reply = distractor_reply = None
    if intent == "image":
        final = rng.choice(OFFER_ACCEPTED if offered else IMAGE_REQUESTS).format(ref=ref)
    else:
        kinds = [a for a in ATTRIBUTES if a != reference.attribute]
        kind = "comment" if (rng.random() < 0.15 and not offered) else rng.choice(kinds)
        question, answer = rng.choice(QUESTIONS[kind])
        final = question.format(ref=ref)
        if offered:
            final = OFFER_DECLINED.format(question=final)
        reply, distractor_reply = answer.format(**target.slots()), answer.format(**distractor.slots())
    turns.append((FRIEND, final))
    return SyntheticDialogue(turns, target, distractor, reference, intent, reply, distractor_reply)


def _dialogue_rng(seed: int, split: str, index: int) -> random.Random:
    # one generator per dialogue: the first k dialogues do not depend on how many are generated;
    # string seeds are hashed with SHA-512 by `random`, so this is stable across processes (unlike hash())
    return random.Random(f"hf_dialret-synthetic/{seed}/{split}/{index}")


def _generate_row_dialogue(
    seed: int, split: str, index: int, image_fraction: float
) -> tuple[SyntheticDialogue, random.Random]:
    # the generator comes back too: a training picture's jitter is drawn from it after the dialogue
    rng = _dialogue_rng(seed, split, index)
    return generate_dialogue(rng, image_fraction, avoid_held_out=split == "train"), rng


def synthetic_ground_truth(
    split: str, index: int, seed: int = 0, image_fraction: float = DEFAULT_IMAGE_FRACTION
) -> SyntheticDialogue:
    """The generated dialogue behind row ``index`` of ``split`` of ``make_synthetic_corpus(seed=seed, ...)``.

    It carries what the dataset row does not: the target, the distractor and how the request refers to the target
    (by the thing, an attribute, or a negation), for error analysis (docs/training.md, "Where the errors are").
    """
    if split not in ("train", *SPLIT_SIZES):
        raise ValueError(f"unknown split {split!r}; the synthetic corpus has train, {', '.join(SPLIT_SIZES)}")
    return _generate_row_dialogue(seed, split, index, image_fraction)[0]


def _rows(split: str, n: int, seed: int, image_size: int, image_fraction: float):
    training = split == "train"
    for index in range(n):
        dialogue, rng = _generate_row_dialogue(seed, split, index, image_fraction)
        if dialogue.intent == "image":
            picture = dialogue.target.picture
            data = png_bytes(render_picture(picture, image_size, rng)) if training else canonical_png(picture, image_size)
            response = image_response({"bytes": data, "path": None}, picture.key)
        else:
            response = text_response(dialogue.reply)
        yield {
            "dialogue_id": f"synthetic-{split}-{index}",
            "context": [text_turn(speaker, text) for speaker, text in dialogue.turns],
            "response": response,
        }


def make_synthetic_corpus(
    num_dialogues: int = 20000,
    seed: int = 0,
    image_size: int = 48,
    *,
    num_validation_dialogues: int = SPLIT_SIZES["validation"],
    num_test_dialogues: int = SPLIT_SIZES["test"],
    image_fraction: float = DEFAULT_IMAGE_FRACTION,
    cache_dir: str | None = None,
) -> datasets.DatasetDict:
    """Generate the synthetic corpus (one example per dialogue) as ``train``/``validation``/``test`` splits.

    Args:
        num_dialogues: Training dialogues (validation and test sizes are keyword arguments).
        seed: Same seed, same rows and same image bytes (each dialogue has its own seeded generator).
        image_size: Side of the square PNG pictures, stored as bytes in the ``Image`` feature (decoded lazily).
        image_fraction: Probability that a dialogue ends with an image request.
        cache_dir: Where the Arrow files go (default: a temporary directory removed at exit).
    """
    if not 0.0 <= image_fraction <= 1.0:
        raise ValueError(f"image_fraction must be in [0, 1], got {image_fraction}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels to draw the shapes, got {image_size}")
    features = unified_features()
    sizes = {"train": num_dialogues, "validation": num_validation_dialogues, "test": num_test_dialogues}
    return datasets.DatasetDict({
        split: write_dataset(_rows(split, n, seed, image_size, image_fraction), features, cache_dir, split=split)
        for split, n in sizes.items()
    })


def tokenize_words(text: str) -> list[str]:
    """Split like BERT's basic tokenizer on this corpus (lower case, punctuation as separate tokens)."""
    return _TOKEN.findall(text.lower())


@lru_cache(maxsize=1)
def synthetic_vocabulary() -> tuple[str, ...]:
    """Every token (per :func:`tokenize_words`) that any text of the corpus can contain, sorted.

    Built from the templates and attribute words, so a word-level or WordPiece vocabulary made from it has no
    unknown tokens on this corpus (checked by the tests on generated data).
    """
    texts: list[str] = [SHARER, FRIEND, ONE_TURN, OFFER_DECLINED, *TWO_TURNS, *UNUSED_COLOUR, *REACTIONS,
                        *DESCRIPTIONS, *REFERENCES.values(), *COUNT_REFS.values(), *IMAGE_REQUESTS, *OFFERS,
                        *OFFER_ACCEPTED, *THINGS, *COLOUR_NAMES, *SHAPES, *SHAPES.values(), *COUNT_WORDS.values(),
                        *BACKGROUND_NAMES]
    texts += [text for opener in OPENERS for _, text in opener]
    texts += [text for pairs in QUESTIONS.values() for pair in pairs for text in pair]
    words = {token for text in texts for token in tokenize_words(re.sub(r"\{[a-z_]+\}", " ", text))}
    return tuple(sorted(words))
