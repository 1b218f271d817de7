"""Attributes and PIL rendering of the synthetic corpus's pictures (see :mod:`hf_dialret.data.synthetic`).

A picture shows ``count`` copies of one ``shape`` in one ``colour`` on one ``background``. Evaluation pictures use a
canonical layout (identical attributes give identical PNG bytes, so the candidate pool deduplicates exactly); training
pictures are jittered in position, size and colour, so the image encoder learns the attributes rather than the pixels.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 170, 60),
    "cyan": (30, 200, 210),
    "blue": (40, 70, 220),
    "purple": (140, 50, 190),
    "pink": (250, 120, 190),
}
SHAPES: dict[str, str] = {  # singular -> plural
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "cross": "crosses",
    "diamond": "diamonds",
}
COUNT_WORDS: dict[int, str] = {1: "one", 2: "two", 3: "three"}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    # neutral tones, so that no object colour is ever confused with a background
    "snow": (240, 240, 236),
    "sand": (205, 185, 140),
    "stone": (115, 115, 115),
    "night": (25, 25, 55),
}
COLOUR_NAMES = tuple(COLOURS)
SHAPE_NAMES = tuple(SHAPES)
BACKGROUND_NAMES = tuple(BACKGROUNDS)


def is_held_out(colour: str, shape: str) -> bool:
    """Colour-shape pairs that never appear in a *training* picture (12 of 48 = 25 %).

    The rule ``(colour + shape) % 4 == 0`` holds out two colours of every shape and one or two shapes of every colour,
    so each colour and each shape is still seen in training: only the combination is new at test time.
    """
    return (COLOUR_NAMES.index(colour) + SHAPE_NAMES.index(shape)) % 4 == 0


@dataclass(frozen=True)
class Picture:
    """The visual attributes of one picture."""

    colour: str
    shape: str
    count: int
    background: str

    @property
    def key(self) -> str:
        """``response.id`` of the picture: attributes, not pixels, so jittered training copies count as duplicates."""
        return f"synthetic/{self.colour}-{self.shape}-{self.count}-{self.background}"

    @classmethod
    def from_key(cls, key: str) -> Picture:
        colour, shape, count, background = key.removeprefix("synthetic/").split("-")
        return cls(colour, shape, int(count), background)


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)]
    if shape == "star":
        return [
            (cx + (r if i % 2 == 0 else 0.45 * r) * math.cos(-math.pi / 2 + i * math.pi / 5),
             cy + (r if i % 2 == 0 else 0.45 * r) * math.sin(-math.pi / 2 + i * math.pi / 5))
            for i in range(10)
        ]
    if shape == "cross":
        w = 0.35 * r
        return [(cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w), (cx + r, cy + w),
                (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w), (cx - r, cy + w),
                (cx - r, cy - w), (cx - w, cy - w)]
    raise ValueError(f"no polygon for shape {shape!r}")


def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: tuple[int, int, int]) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        s = 0.82 * r  # same visual area as the circle, roughly
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    else:
        draw.polygon(_shape_points(shape, cx, cy, r), fill=fill)


# canonical centres in units of the image size, chosen so that objects never overlap
_CANONICAL = {1: [(0.5, 0.5)], 2: [(0.27, 0.5), (0.73, 0.5)], 3: [(0.27, 0.3), (0.73, 0.3), (0.5, 0.72)]}


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, int, int]:
    return tuple(min(255, max(0, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


def render_picture(picture: Picture, image_size: int = 48, rng: random.Random | None = None) -> Image.Image:
    """Draw ``picture``; with ``rng`` the layout, sizes and colours are jittered (training pictures)."""
    s = image_size
    background = BACKGROUNDS[picture.background]
    fill = COLOURS[picture.colour]
    if rng is not None:
        background, fill = _jitter(background, rng, 12), _jitter(fill, rng, 25)
    image = Image.new("RGB", (s, s), background)
    draw = ImageDraw.Draw(image)
    radius = 0.19 * s if picture.count > 1 else 0.28 * s
    for cx, cy in _CANONICAL[picture.count]:
        r = radius
        if rng is not None:
            r = radius * rng.uniform(0.8, 1.1)
            cx, cy = cx + rng.uniform(-0.07, 0.07), cy + rng.uniform(-0.07, 0.07)
        _draw(draw, picture.shape, cx * s, cy * s, r, fill)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # level 1: same bytes every time, much faster than the default
    return buffer.getvalue()


@lru_cache(maxsize=4096)
def canonical_png(picture: Picture, image_size: int) -> bytes:
    """PNG bytes of the canonical rendering (evaluation pictures), cached: there are only 576 pictures."""
    return png_bytes(render_picture(picture, image_size))
