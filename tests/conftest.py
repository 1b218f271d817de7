"""Shared fixtures: tiny backbones saved once per session, a tiny processor, tiny configs and a tiny batch.

Other test packages may use them too: ``tiny_backbones`` -> (text_dir, vision_dir) loadable with from_pretrained,
``tiny_processor`` -> DialogueRetrievalProcessor, ``tiny_config(ConfigClass, **kwargs)``, ``make_image(seed)``,
``torchrun(*args)`` -> a finished two-process CPU launch.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

TINY_WORDS = (
    "a the is it i you look at this my new red blue green round square circle dog cat ball box photo here "
    "nice wow cute what colour do have see like love sure yes no"
).split()


@pytest.fixture(scope="session", autouse=True)
def _single_thread():
    # The machines have 2 cores shared by several jobs; one thread per test process keeps runs fast and stable.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def torchrun():
    """``torchrun(*args, timeout=300)``: ``python -m torch.distributed.run --nproc_per_node 2 <args>`` on a free port,
    one thread per process and no GPU; returns the ``CompletedProcess`` (output captured as text)."""

    def launch(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
                   *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)

    return launch


def make_image(seed: int, size: int = 48) -> Image.Image:
    """A deterministic random RGB image."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def tiny_words() -> list[str]:
    """The vocabulary words of the tiny tokenizer (besides specials, punctuation, digits and letters)."""
    return list(TINY_WORDS)


@pytest.fixture(scope="session")
def tiny_backbones(tmp_path_factory) -> tuple[str, str]:
    """(text_dir, vision_dir): a tiny BERT + tokenizer and a tiny ResNet + image processor saved to disk."""
    from hf_dialret.backbones import save_tiny_backbones

    return save_tiny_backbones(tmp_path_factory.mktemp("tiny_backbones"), TINY_WORDS)


@pytest.fixture(scope="session")
def tiny_processor(tiny_backbones):
    from hf_dialret import DialogueRetrievalProcessor

    text_dir, vision_dir = tiny_backbones
    return DialogueRetrievalProcessor.from_backbones(text_dir, vision_dir, max_context_length=32, max_response_length=8)


@pytest.fixture(scope="session")
def tiny_config(tiny_processor):
    """Factory: ``tiny_config(DualRetrieverConfig, projection_dim=16)`` -> a tiny config matching the processor."""
    from hf_dialret.backbones import tiny_retriever_config

    def build(config_class, **kwargs):
        kwargs.setdefault("projection_dim", 16)
        return tiny_retriever_config(config_class, tiny_processor.tokenizer, **kwargs)

    return build


@pytest.fixture(scope="session")
def tiny_examples():
    """Four dialogues (two with context images) and their responses: text, image, text, image."""
    dialogues = [
        [{"speaker": "A", "text": "look at my new dog", "image": make_image(1)}, {"speaker": "B", "text": "cute"}],
        [{"speaker": "A", "text": "do you have a cat"}, {"speaker": "B", "text": "yes here", "image": None}],
        [{"speaker": "A", "text": "i love the red ball"}, {"speaker": "B", "text": "a photo", "image": make_image(2)}],
        ["what colour is the box", "blue"],
    ]
    responses = ["wow nice", make_image(3), {"modality": "text", "text": "sure i like it"}, make_image(4)]
    return dialogues, responses


@pytest.fixture(scope="session")
def tiny_batch(tiny_processor, tiny_examples):
    dialogues, responses = tiny_examples
    return dict(tiny_processor(dialogues, responses))
