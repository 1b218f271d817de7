"""Shared fixtures of the data tests: fixture paths, small image writers, a tiny real processor."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PHOTOCHAT_SAMPLE = FIXTURES / "photochat" / "test_00_first20.json"
MMDIALOG_ROOT = FIXTURES / "mmdialog"


def photochat_records() -> list[dict]:
    return json.loads(PHOTOCHAT_SAMPLE.read_text(encoding="utf-8"))


def write_jpeg(path: Path, size: tuple[int, int] = (20, 12), colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="JPEG")
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but carries no pixels: a decompression-bomb stand-in."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


def truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()[:300]


@pytest.fixture(scope="session")
def tiny_processor(tmp_path_factory):
    """The real DialogueRetrievalProcessor over tiny backbones whose vocabulary is the synthetic corpus's."""
    from hf_dialret.backbones import save_tiny_backbones
    from hf_dialret.data import synthetic_vocabulary
    from hf_dialret.modeling.processing_dialogue_retrieval import DialogueRetrievalProcessor

    text_dir, vision_dir = save_tiny_backbones(tmp_path_factory.mktemp("backbones"), synthetic_vocabulary())
    return DialogueRetrievalProcessor.from_backbones(text_dir, vision_dir)
