"""ResponseIndex save/load: FAISS format + JSON + Parquet (no pickle), atomic replacement, model/index mismatch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest
from retrieval_helpers import DIALOGUES, TEXTS, image

from hf_dialret.retrieval import ResponseIndex
from hf_dialret.retrieval import storage


@pytest.fixture(scope="module")
def built(mdr_model, tiny_processor, image_files):
    # Texts, image files (kept as paths) and an in-memory image (kept as PNG bytes).
    return ResponseIndex.build(mdr_model, tiny_processor, texts=TEXTS, images=[*image_files, image(9)],
                               show_progress=False)


def test_round_trip_preserves_candidates_and_results(built, mdr_model, tiny_processor, image_files, tmp_path):
    built.save(tmp_path / "index")
    files = sorted(p.name for p in (tmp_path / "index").iterdir())
    assert files == ["candidates.parquet", "image.faiss", "index_config.json", "text.faiss"]
    for name in ("text", "image"):  # FAISS's own format, readable without hf_dialret
        raw = faiss.read_index(str(tmp_path / "index" / f"{name}.faiss"))
        assert raw.metric_type == faiss.METRIC_INNER_PRODUCT and raw.ntotal == built.counts[name]
    table = pq.read_table(tmp_path / "index" / "candidates.parquet").to_pydict()
    assert table["text"][: len(TEXTS)] == TEXTS and table["image_path"][len(TEXTS):-1] == image_files
    config = json.loads((tmp_path / "index" / "index_config.json").read_text())
    assert config["model"]["architecture"] == "MultimodalDualRetrieverModel" and config["dim"] == 16
    loaded = ResponseIndex.load(tmp_path / "index", mdr_model, tiny_processor)
    assert loaded.search(DIALOGUES, k=5) == built.search(DIALOGUES, k=5)
    assert np.array_equal(np.asarray(loaded[len(loaded) - 1].load_image()), np.asarray(image(9)))
    loaded.add(["one more"])  # a loaded index keeps growing
    assert len(loaded) == len(built) + 1


def test_a_crash_mid_save_leaves_the_previous_index_intact(built, mdr_model, tiny_processor, monkeypatch, tmp_path):
    target = tmp_path / "index"
    built.save(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    bigger = ResponseIndex.load(target, mdr_model, tiny_processor)
    bigger.add(["an extra reply"])

    def crash(*args, **kwargs):  # the FAISS files are already written when the Parquet write dies
        raise OSError("disk full")

    monkeypatch.setattr(storage.pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        bigger.save(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ["index"]  # no temporary directory left behind
    monkeypatch.undo()

    real_rename = os.rename

    def fail_swap(src, dst):  # the old index is moved aside, then moving the new one in fails
        if Path(src).name.startswith(".index.tmp-"):
            raise OSError("rename failed")
        real_rename(src, dst)

    monkeypatch.setattr(storage.os, "rename", fail_swap)
    with pytest.raises(OSError, match="rename failed"):
        bigger.save(target)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ["index"]
    assert len(ResponseIndex.load(target)) == len(built)
    bigger.save(target)  # and a save that succeeds replaces it
    assert len(ResponseIndex.load(target)) == len(built) + 1


def test_save_refuses_to_replace_other_directories(built, tmp_path):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a saved ResponseIndex"):
        built.save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_load_errors_are_clear(built, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved ResponseIndex"):
        ResponseIndex.load(tmp_path)
    built.save(tmp_path / "index")
    config = json.loads((tmp_path / "index" / "index_config.json").read_text())
    (tmp_path / "index" / "index_config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(ValueError, match="format version 99"):
        ResponseIndex.load(tmp_path / "index")
    (tmp_path / "index" / "index_config.json").write_text(json.dumps(config))
    (tmp_path / "index" / "image.faiss").unlink()
    with pytest.raises(ValueError, match="no image.faiss"):
        ResponseIndex.load(tmp_path / "index")


@pytest.mark.parametrize("damage, name", [
    (lambda d: (d / "candidates.parquet").unlink(), "candidates.parquet"),
    (lambda d: (d / "text.faiss").write_bytes(b"hello, not an index"), "text.faiss"),
    (lambda d: (d / "index_config.json").write_text("{not json"), "index_config.json"),
    (lambda d: _edit_config(d, lambda c: c.pop("dim")), "index_config.json"),
    (lambda d: _edit_config(d, lambda c: c["model"].update(extra=1)), "index_config.json"),
])
def test_a_damaged_index_is_one_clear_error(built, tmp_path, damage, name):
    built.save(tmp_path / "index")
    damage(tmp_path / "index")
    with pytest.raises(ValueError, match=rf"corrupted or incomplete ResponseIndex \({name}: .*rebuild it"):
        ResponseIndex.load(tmp_path / "index")


def _edit_config(directory, edit):
    config = json.loads((directory / "index_config.json").read_text())
    edit(config)
    (directory / "index_config.json").write_text(json.dumps(config))


def test_model_index_mismatch_is_refused(built, make_model, tiny_processor, dr_model, tmp_path):
    built.save(tmp_path / "index")
    with pytest.raises(ValueError, match="built with a MultimodalDualRetrieverModel .* model is a DualRetrieverModel"):
        ResponseIndex.load(tmp_path / "index", dr_model, tiny_processor)
    with pytest.raises(ValueError, match="16-dim embeddings but MultimodalDualRetrieverModel encodes 8-dim"):
        ResponseIndex.load(tmp_path / "index", make_model("mdr", projection_dim=8), tiny_processor)
    retrained = make_model("mdr", seed=1)  # same class and width, other weights
    with pytest.raises(ValueError, match="weights differ"):
        ResponseIndex.load(tmp_path / "index", retrained, tiny_processor)
    assert len(ResponseIndex.load(tmp_path / "index", retrained, tiny_processor, check_model=False)) == len(built)
