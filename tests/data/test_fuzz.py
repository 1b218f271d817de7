"""Fuzzing the readers: any record either loads or raises DataFormatError, never anything else."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import photochat_records, write_jpeg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_dialret.data import DataFormatError, load_mmdialog, load_photochat

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
scalars = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False, width=16) | st.text(max_size=6)
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                                               inner, max_size=3),
                        max_leaves=8)
messages = st.fixed_dictionaries({"message": st.text(max_size=8) | anything, "share_photo": st.booleans() | anything,
                                  "user_id": st.integers(0, 1) | anything})
photochat_record = st.fixed_dictionaries(
    {"dialogue": st.lists(messages, max_size=5) | anything, "dialogue_id": st.integers(0, 9) | anything},
    optional={"photo_id": st.sampled_from(["train/ab12", "../x", "a/b/c", "/abs", "x"]) | anything,
              "photo_url": st.text(max_size=10) | anything, "photo_description": anything})
elements = st.sampled_from([{"__TEXT__": "hi"}, {"__MEDIA__": "7"}, {"__MEDIA__": "../7"}, {"__TEXT__": ""}]) | \
    st.dictionaries(st.sampled_from(["__TEXT__", "__MEDIA__", "x"]), anything, max_size=2)
mmdialog_record = st.fixed_dictionaries(
    {"conversation_id": st.integers(0, 9) | anything,
     "conversation": st.lists(st.fixed_dictionaries({"turn": st.lists(elements, max_size=3) | anything}) | anything,
                              max_size=4) | anything},
    optional={"negative_candidate_texts": st.lists(st.text(max_size=3), max_size=2) | anything,
              "negative_candidate_media_keys": st.lists(st.sampled_from(["7", "8", "..", "/x"]), max_size=2)})


@contextmanager
def _folder() -> Iterator[Path]:
    # hypothesis runs many examples per test: a function-scoped tmp_path would be shared, so make one each time
    with tempfile.TemporaryDirectory(prefix="hf_dialret-fuzz-") as name:
        folder = Path(name)
        write_jpeg(folder / "7.jpg")
        write_jpeg(folder / "ab12.jpg")
        yield folder


@SETTINGS
@given(st.lists(photochat_record, min_size=1, max_size=3), st.booleans())
def test_photochat_reader_only_raises_data_format_error(records, with_images):
    with _folder() as folder:
        path = folder / "shard.json"
        path.write_text(json.dumps(records), encoding="utf-8")
        try:
            load_photochat(path, "test", image_dir=folder if with_images else None)
        except DataFormatError:
            pass


@SETTINGS
@given(st.lists(photochat_record, min_size=1, max_size=3))
def test_photochat_skip_mode_never_raises_on_records(records):
    with _folder() as folder:
        path = folder / "shard.json"
        path.write_text(json.dumps([photochat_records()[0], *records]), encoding="utf-8")
        assert len(load_photochat(path, "test", on_error="skip")) >= 1


@SETTINGS
@given(st.lists(mmdialog_record | anything, min_size=1, max_size=3), st.booleans(), st.booleans())
def test_mmdialog_reader_only_raises_data_format_error(records, as_array, test_split):
    with _folder() as folder:
        path = folder / "conversations.json"
        text = json.dumps(records) if as_array else "".join(json.dumps(r) + "\n" for r in records)
        path.write_text(text, encoding="utf-8")
        try:
            rows = load_mmdialog(path, "test" if test_split else "train", streaming=as_array)
            list(rows)
        except DataFormatError:
            pass


@SETTINGS
@given(st.text(max_size=60) | st.binary(max_size=60).map(lambda b: b.decode("latin-1")))
def test_readers_on_arbitrary_text(text):
    with _folder() as folder:
        path = folder / "conversations.json"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        for load in (lambda: load_mmdialog(path, "train"), lambda: load_photochat(path, "test")):
            try:
                load()
            except DataFormatError:
                pass
