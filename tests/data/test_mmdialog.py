"""MMDialog reader on fixtures that follow the real schema: JSON Lines and arrays, streaming, candidates, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest
from conftest import MMDIALOG_ROOT, write_jpeg

from hf_dialret.data import DataFormatError, ErrorReport, MissingImageError, load_mmdialog

TRAIN = MMDIALOG_ROOT / "train" / "conversations.json"


def records(path: Path = TRAIN) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def plain(rows) -> list[dict]:
    """Rows with images replaced by their sizes, comparable across eager and streaming loads."""
    def image(value):
        return None if value is None else value.size
    return [{"dialogue_id": r["dialogue_id"],
             "context": [(t["speaker"], t["text"], image(t["image"])) for t in r["context"]],
             "response": (r["response"]["modality"], r["response"]["text"], r["response"]["id"],
                          image(r["response"]["image"]))} for r in rows]


def test_fixtures_are_in_the_real_format():
    for path in (TRAIN, MMDIALOG_ROOT / "test" / "conversations.json"):
        text = path.read_text(encoding="utf-8")
        assert "".join(json.dumps(r) + "\n" for r in records(path)) == text


def test_train_examples_one_per_response_element():
    ds = load_mmdialog(MMDIALOG_ROOT, "train")
    assert "candidates" not in ds.column_names
    got = plain(ds)
    assert [r["response"][0] for r in got] == ["text", "image", "text", "text", "text", "image", "image", "image",
                                               "text", "text"]
    first = records()[0]["conversation"]
    assert got[0]["context"] == [("", first[0]["turn"][0]["__TEXT__"], None), ("", None, (16, 16))]
    assert got[1]["response"][2] == first[1]["turn"][1]["__MEDIA__"]  # an image's id is its media key
    assert got[1]["context"] == got[0]["context"]  # siblings in one turn share the context
    # conversation 1, turn 1 lists its media *before* its text: elements are found by key
    second = records()[1]["conversation"]
    assert got[4]["response"][:2] == ("text", "Look at this")
    assert got[5]["response"][2] == second[1]["turn"][0]["__MEDIA__"]
    assert len(got[6]["context"]) == 3 and got[6]["dialogue_id"] == "mmdialog/1"
    assert got[8]["response"][1] == "HongKong I tag"


def test_json_array_variant_and_streaming_match_eager(tmp_path):
    eager = plain(load_mmdialog(MMDIALOG_ROOT, "train"))
    streamed = load_mmdialog(MMDIALOG_ROOT, "train", streaming=True)
    assert isinstance(streamed, datasets.IterableDataset)
    assert plain(streamed) == eager
    folder = tmp_path / "train"
    shutil.copytree(MMDIALOG_ROOT / "train", folder)
    (folder / "conversations.json").write_text(json.dumps(records(), indent=1), encoding="utf-8")
    assert plain(load_mmdialog(tmp_path, "train")) == eager
    assert plain(load_mmdialog(folder / "conversations.json", "train", streaming=True)) == eager


def test_test_split_has_999_plus_999_candidates_per_example():
    ds = load_mmdialog(MMDIALOG_ROOT, "test")
    assert len(ds) == 5
    no_images = ds.cast_column("candidates", datasets.Features(
        {"texts": datasets.List(datasets.Value("string")), "images": datasets.List(datasets.Image(decode=False))}))
    raw = records(MMDIALOG_ROOT / "test" / "conversations.json")
    for row in no_images:
        candidates = row["candidates"]
        assert len(candidates["texts"]) == len(candidates["images"]) == 999
        assert row["response"]["id"] not in {Path(i["path"]).stem for i in candidates["images"]}
    keys = raw[0]["negative_candidate_media_keys"]
    assert [Path(i["path"]).stem for i in no_images[0]["candidates"]["images"]] == keys
    assert ds[0]["candidates"]["images"][5].size == (8, 8)
    assert len(load_mmdialog(MMDIALOG_ROOT, "test", candidates=False).column_names) == 3


def write_lines(tmp_path: Path, rows: list) -> Path:
    folder = tmp_path / "train"
    shutil.copytree(MMDIALOG_ROOT / "train", folder, dirs_exist_ok=True)
    path = folder / "conversations.json"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _good():
    return records()[0]


@pytest.mark.parametrize("bad, field, message", [
    ('{"conversation_id": 3, "conversation": [', None, "malformed JSON"),
    ({"conversation": []}, "conversation_id", "missing"),
    ({"conversation_id": 3, "conversation": []}, "conversation", "empty dialogue"),
    ({"conversation_id": True, "conversation": [{"turn": [{"__TEXT__": "x"}]}]}, "conversation_id", "expected int"),
    ({"conversation_id": 3, "conversation": [{"turn": [{"__TEXT__": 5}]}]}, "conversation[0].turn[0].__TEXT__",
     "expected str"),
    ({"conversation_id": 3, "conversation": [{"turn": [{"__VIDEO__": "x"}]}]}, "conversation[0].turn[0]",
     "__TEXT__ or __MEDIA__"),
    ({"conversation_id": 3, "conversation": [{"turn": [{"__TEXT__": " "}]}]}, "conversation[0].turn", "empty turn"),
    ({"conversation_id": 3, "conversation": [{"turn": [{"__TEXT__": "a"}, {"__MEDIA__": "404"}]}]},
     "conversation[0].turn.__MEDIA__", "not found"),
    ({"conversation_id": 3, "conversation": [{"turn": [{"__TEXT__": "a"}, {"__MEDIA__": "../../x"}]}]},
     "conversation[0].turn.__MEDIA__", "escapes image_dir"),
])
def test_bad_records_raise_or_are_skipped(tmp_path, bad, field, message):
    path = write_lines(tmp_path, [_good(), bad, _good()])
    with pytest.raises(DataFormatError, match=message) as info:
        load_mmdialog(path.parent.parent, "train")
    assert (info.value.file, info.value.record, info.value.field) == (str(path), 1, field)
    report = ErrorReport()
    ds = load_mmdialog(path, "train", on_error="skip", error_report=report)
    assert len(ds) == 2 * 4 and report.count == 1
    report = ErrorReport()
    streamed = load_mmdialog(path, "train", streaming=True, on_error="skip", error_report=report)
    assert len(list(streamed)) == 8 and report.count == 1
    assert len(list(streamed)) == 8 and report.count == 2  # every pass over a stream adds to the report...
    report.reset()
    assert len(list(streamed)) == 8 and report.count == 1 and len(report.errors) == 1  # ...unless reset between


def test_candidates_are_required_and_checked_in_test_split(tmp_path):
    raw = records(MMDIALOG_ROOT / "test" / "conversations.json")
    folder = tmp_path / "test"
    folder.mkdir()
    for key in {e["__MEDIA__"] for r in raw for t in r["conversation"] for e in t["turn"] if "__MEDIA__" in e}:
        write_jpeg(folder / f"{key}.jpg")
    missing = dict(raw[0])
    missing.pop("negative_candidate_texts")
    (folder / "conversations.json").write_text(json.dumps(missing) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="999 negatives") as info:
        load_mmdialog(tmp_path, "test")
    assert info.value.field == "negative_candidate_texts"
    (folder / "conversations.json").write_text(json.dumps(raw[0]) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="not found") as info:  # negative images absent from this folder
        load_mmdialog(tmp_path, "test")
    assert info.value.field == "negative_candidate_media_keys[0]"
    assert len(load_mmdialog(tmp_path, "test", verify_images=False)) == 3


def test_malformed_array_cannot_be_skipped(tmp_path):
    path = tmp_path / "conversations.json"
    path.write_text('[{"conversation_id": 0, "conversation": [{"turn": [{"__TEXT__": "hi"}]}]}, {"conv', "utf-8")
    with pytest.raises(DataFormatError, match="malformed JSON") as info:
        load_mmdialog(path, "train", on_error="skip")
    assert info.value.record == 1


def test_missing_file_and_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_mmdialog(tmp_path, "train")
    path = write_lines(tmp_path, [_good()])
    (path.parent / f"{_good()['conversation'][0]['turn'][1]['__MEDIA__']}.jpg").unlink()
    with pytest.raises(MissingImageError):
        load_mmdialog(path, "train")
