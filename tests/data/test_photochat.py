"""PhotoChat reader on the real sample (first 20 test dialogues), variants, layouts, images and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import PHOTOCHAT_SAMPLE, photochat_records, png_header_only, truncated_jpeg, write_jpeg

from hf_dialret.data import DataFormatError, ErrorReport, MissingImageError, load_photochat
from hf_dialret.data.images import safe_join


def dump(records, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2), encoding="utf-8")
    return path


def test_sample_is_the_real_format():
    text = PHOTOCHAT_SAMPLE.read_text(encoding="utf-8")
    assert json.dumps(json.loads(text), indent=2) == text


def test_example_counts_per_task():
    # one photo per dialogue (never the first message) and every later text message is a text example
    records = photochat_records()
    expected_text = sum(not m["share_photo"] for r in records for m in r["dialogue"][1:])
    assert expected_text == 252
    assert len(load_photochat(PHOTOCHAT_SAMPLE, "test", tasks=("image",))) == 20
    assert len(load_photochat(PHOTOCHAT_SAMPLE, "test", tasks=("text",))) == 252
    both = load_photochat(PHOTOCHAT_SAMPLE, "test")
    assert len(both) == 272
    assert both["response"][0]["modality"] == "text"


def test_image_example_context_is_cut_at_the_share_turn():
    ds = load_photochat(PHOTOCHAT_SAMPLE, "test", tasks=("image",))
    by_id = {row["dialogue_id"]: row for row in ds}
    assert sorted(by_id) == sorted(f"photochat/test/{i}" for i in range(20))
    row = by_id["photochat/test/13"]
    assert [t["text"] for t in row["context"]] == [
        "how is life going", "cool. what you want to talk about?", "now i am playing with my grand daughters"]
    assert [t["speaker"] for t in row["context"]] == ["0", "1", "0"]
    assert row["response"] == {"modality": "image", "text": None, "image": None, "id": "train/3b4a85bac6ead3c8"}
    for record in photochat_records():
        share = next(i for i, m in enumerate(record["dialogue"]) if m["share_photo"])
        got = by_id[f"photochat/test/{record['dialogue_id']}"]
        assert len(got["context"]) == share
        assert got["response"]["id"] == record["photo_id"]


def test_text_examples_after_the_photo_contain_the_photo_turn():
    ds = load_photochat(PHOTOCHAT_SAMPLE, "test", tasks=("text",))
    rows = [r for r in ds if r["dialogue_id"] == "photochat/test/13"]
    assert [r["response"]["text"] for r in rows] == [
        "cool. what you want to talk about?", "now i am playing with my grand daughters", "they're beautiful!"]
    last = rows[-1]["context"]
    assert len(last) == 4 and last[3]["text"] is None and last[3]["speaker"] == "0"


def test_merge_consecutive_messages_flag():
    records = photochat_records()
    merged = load_photochat(PHOTOCHAT_SAMPLE, "test", tasks=("text",), merge_consecutive=True)
    expected = 0
    for record in records:
        runs, previous = [], None
        for m in record["dialogue"]:
            if m["share_photo"] or previous is None or previous["share_photo"] or previous["user_id"] != m["user_id"]:
                runs.append(m)
            previous = m
        expected += sum(not m["share_photo"] for m in runs[1:])
    assert len(merged) == expected < 252
    assert all("  " not in r["response"]["text"] for r in merged)


def test_variant_without_photo_id_and_official_layout(tmp_path):
    records = photochat_records()
    old = [{k: v for k, v in r.items() if k != "photo_id"} for r in records]
    dump(old[:10], tmp_path / "dev" / "dev_00.json")
    dump(records[10:], tmp_path / "dev" / "dev_01.json")
    ds = load_photochat(tmp_path, "validation", tasks=("image",))
    assert len(ds) == 20
    assert ds[0]["response"]["id"] == records[0]["photo_url"]  # the variant without photo_id keys photos by URL
    assert ds[10]["response"]["id"] == records[10]["photo_id"]
    assert ds[0]["dialogue_id"] == "photochat/validation/0"
    with pytest.raises(FileNotFoundError, match="no PhotoChat shards"):
        load_photochat(tmp_path, "train")


def test_photos_resolve_in_both_layouts_and_decode_lazily(tmp_path):
    records = photochat_records()[:4]
    images = tmp_path / "images"
    for i, r in enumerate(records):
        subset, name = r["photo_id"].split("/")
        target = images / subset / f"{name}.jpg" if i % 2 else images / f"{name}.jpg"
        write_jpeg(target, size=(30 + i, 20))
    ds = load_photochat(dump(records, tmp_path / "d.json"), "test", image_dir=images, tasks=("image",))
    assert [row["response"]["image"].size for row in ds] == [(30 + i, 20) for i in range(4)]
    texts = load_photochat(dump(records, tmp_path / "d.json"), "test", image_dir=images, tasks=("text",))
    photo_turns = [t for row in texts for t in row["context"] if t["text"] is None]
    assert photo_turns and all(t["image"] is not None for t in photo_turns)


def test_missing_photo_raises_or_is_skipped(tmp_path):
    records = photochat_records()[:3]
    images = tmp_path / "images"
    for r in records[1:]:
        write_jpeg(images / f"{r['photo_id']}.jpg")
    file = dump(records, tmp_path / "d.json")
    with pytest.raises(MissingImageError) as info:
        load_photochat(file, "test", image_dir=images)
    assert (info.value.file, info.value.record, info.value.field) == (str(file), 0, "photo_id")
    report = ErrorReport()
    ds = load_photochat(file, "test", image_dir=images, tasks=("image",), on_error="skip", error_report=report)
    assert len(ds) == 2 and report.count == 1 and "photo_id" in report.summary()


@pytest.mark.parametrize("content, message", [
    (b"not an image", "corrupt"),
    (truncated_jpeg(), "corrupt"),
    (png_header_only(60000, 60000), "decompression"),
])
def test_bad_photo_files(tmp_path, content, message):
    record = photochat_records()[0]
    path = tmp_path / "images" / f"{record['photo_id']}.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=message):
        load_photochat(dump([record], tmp_path / "d.json"), "test", image_dir=tmp_path / "images")


def test_pixel_limit(tmp_path):
    record = photochat_records()[0]
    write_jpeg(tmp_path / "images" / f"{record['photo_id']}.jpg", size=(20, 20))
    file = dump([record], tmp_path / "d.json")
    with pytest.raises(DataFormatError, match="over the limit of 100"):
        load_photochat(file, "test", image_dir=tmp_path / "images", max_pixels=100)
    assert len(load_photochat(file, "test", image_dir=tmp_path / "images", max_pixels=400)) > 0


def test_photo_reference_escaping_image_dir(tmp_path):
    record = dict(photochat_records()[0], photo_id="../secret")
    write_jpeg(tmp_path / "secret.jpg")
    with pytest.raises(DataFormatError, match="escapes image_dir") as info:
        load_photochat(dump([record], tmp_path / "d.json"), "test", image_dir=tmp_path / "images")
    assert info.value.field == "photo_id"


def test_safe_join_rejects_absolute_parent_and_link_escapes(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for reference in ("/etc/passwd", "a/../../x.jpg", "..", "", "C:/x.jpg", "a\x00b"):
        with pytest.raises(DataFormatError, match="escapes"):
            safe_join(root, reference)
    os.symlink(tmp_path, root / "link")
    with pytest.raises(DataFormatError, match="link"):
        safe_join(root, "link/x.jpg")
    assert safe_join(root, "sub/./x.jpg") == (root / "sub" / "x.jpg").resolve()


def _broken(mutate):
    record = json.loads(json.dumps(photochat_records()[13]))
    mutate(record)
    return record


@pytest.mark.parametrize("mutate, field, message", [
    (lambda r: r.pop("dialogue"), "dialogue", "missing"),
    (lambda r: r.update(dialogue=[]), "dialogue", "empty dialogue"),
    (lambda r: r.update(dialogue_id=1.5), "dialogue_id", "expected int"),
    (lambda r: r["dialogue"][1].update(user_id="1"), "dialogue[1].user_id", "expected int"),
    (lambda r: r["dialogue"][1].update(share_photo=0), "dialogue[1].share_photo", "expected bool"),
    (lambda r: r["dialogue"][0].pop("message"), "dialogue[0].message", "missing"),
    (lambda r: r["dialogue"][1].update(message="  "), "dialogue[1].message", "empty message"),
    (lambda r: r["dialogue"][3].update(share_photo=False, message="hi"), "dialogue[].share_photo", "no shared photo"),
    (lambda r: r["dialogue"][1].update(share_photo=True), "dialogue[].share_photo", "2 shared photos"),
    (lambda r: r.update(photo_id="no-slash"), "photo_id", "<subset>/<id>"),
    (lambda r: r.pop("photo_id") and r.pop("photo_url"), "photo_url", "missing"),
])
def test_malformed_records_name_file_record_and_field(tmp_path, mutate, field, message):
    records = photochat_records()[:2] + [_broken(mutate)]
    file = dump(records, tmp_path / "d.json")
    with pytest.raises(DataFormatError, match=message) as info:
        load_photochat(file, "test")
    assert (info.value.file, info.value.record, info.value.field) == (str(file), 2, field)
    assert f"record 2" in str(info.value) and field in str(info.value)
    report = ErrorReport()
    skipped = load_photochat(file, "test", tasks=("image",), on_error="skip", error_report=report)
    assert len(skipped) == 2 and report.count == 1 and report.errors[0].field == field


def test_malformed_json_and_bad_arguments(tmp_path):
    file = tmp_path / "d.json"
    file.write_text('[{"dialogue": [}]', encoding="utf-8")
    with pytest.raises(DataFormatError, match="malformed JSON") as info:
        load_photochat(file, "test")
    assert info.value.file == str(file) and info.value.record == 0
    with pytest.raises(ValueError, match="on_error"):
        load_photochat(PHOTOCHAT_SAMPLE, "test", on_error="ignore")
    with pytest.raises(ValueError, match="tasks"):
        load_photochat(PHOTOCHAT_SAMPLE, "test", tasks=("video",))
