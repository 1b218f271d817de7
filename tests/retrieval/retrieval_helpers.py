"""Constants and helpers shared by the serving tests (imported as a plain module: tests/ is not a package)."""

from __future__ import annotations

import numpy as np
from PIL import Image

TEXTS = ["wow nice", "sure i like it", "what colour is it", "a red ball", "yes a cat"]
DIALOGUES = [
    ["look at my new dog", "cute"],
    [{"speaker": "A", "text": "do you have a cat"}, {"speaker": "B", "text": "yes here"}],
    ["what colour is the box", "blue"],
]


def image(seed: int, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
