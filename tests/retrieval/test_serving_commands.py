"""`hf-dialret index` and `hf-dialret search` through the CLI dispatcher (in-process, like the console script)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from retrieval_helpers import TEXTS

from hf_dialret.cli import main as cli
from hf_dialret.retrieval import ResponseIndex


@pytest.fixture(scope="module")
def sources(tmp_path_factory, image_files) -> dict[str, str]:
    root = tmp_path_factory.mktemp("sources")
    (root / "replies.txt").write_text("\n".join(TEXTS[:3]) + "\n")
    folder = root / "photos"
    folder.mkdir()
    for path in image_files[:2]:
        shutil.copy(path, folder / Path(path).name)
    (root / "more.jsonl").write_text(json.dumps({"text": TEXTS[3]}) + "\n"
                                     + json.dumps({"image": f"photos/{Path(image_files[0]).name}"}) + "\n")
    return {"txt": str(root / "replies.txt"), "folder": str(folder), "jsonl": str(root / "more.jsonl"),
            "root": str(root)}


def test_index_then_search(mdr_dir, sources, tmp_path, capsys):
    out = str(tmp_path / "index")
    assert cli(["index", "--model", mdr_dir, "--candidates", sources["txt"], sources["folder"], "--output", out,
                "--device", "cpu"]) == 0
    assert "indexed 5 candidates" in capsys.readouterr().out
    index = ResponseIndex.load(out)
    assert index.counts == {"text": 3, "image": 2} and index[3].image_path.endswith("photo0.png")

    assert cli(["index", "--model", mdr_dir, "--candidates", sources["jsonl"], "--output", out, "--append",
                "--device", "cpu"]) == 0
    assert ResponseIndex.load(out).counts == {"text": 4, "image": 3}
    capsys.readouterr()

    # The model is found from the index's record; turns as repeated --turn.
    assert cli(["search", "--index", out, "--turn", "look at my new dog", "--turn", "cute", "--top_k", "3",
                "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("  1. [")

    dialogue = Path(sources["root"]) / "chat.json"
    dialogue.write_text(json.dumps([[{"speaker": "a", "text": "what colour is the box"}], ["a red ball"]]))
    assert cli(["search", "--index", out, "--dialogue", str(dialogue), "--json", "--device", "cpu",
                "--modality", "text"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and all(h["modality"] == "text" and h["text"] in TEXTS for row in rows for h in row)


def test_clear_errors(mdr_dir, dr_dir, sources, mdr_index_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": broken\n')
    assert cli(["index", "--model", mdr_dir, "--candidates", str(bad), "--output", str(tmp_path / "x"),
                "--device", "cpu"]) == 1
    assert f"{bad}:2: malformed JSON" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

    no_model = str(tmp_path)
    assert cli(["index", "--model", no_model, "--candidates", sources["txt"], "--output", str(tmp_path / "x")]) == 1
    assert "holds no saved model" in capsys.readouterr().err

    assert cli(["search", "--index", mdr_index_dir, "--model", dr_dir, "--turn", "hi", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "model/index mismatch" in err and "MultimodalDualRetrieverModel" in err and "DualRetrieverModel" in err

    assert cli(["index", "--model", dr_dir, "--candidates", sources["txt"], "--output", mdr_index_dir, "--append",
                "--device", "cpu"]) == 1
    assert "model/index mismatch" in capsys.readouterr().err

    assert cli(["search", "--index", mdr_index_dir, "--device", "cpu"]) == 1
    assert "either as --turn arguments or as --dialogue" in capsys.readouterr().err


def test_index_command_refuses_what_it_would_ignore(mdr_dir, sources, mdr_index_dir, tmp_path, capsys):
    out = str(tmp_path / "x")
    assert cli(["index", "--model", mdr_dir, "--candidates", sources["txt"], "--output", mdr_index_dir, "--append",
                "--factory", "HNSW32", "--device", "cpu"]) == 1
    assert "--factory applies to a new index" in capsys.readouterr().err
    empty = tmp_path / "EMPTY.TXT"  # upper-case suffixes are accepted, as for pictures
    empty.write_text("")
    assert cli(["index", "--model", mdr_dir, "--candidates", str(empty), "--output", out, "--device", "cpu"]) == 1
    assert "nothing to index" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert cli(["index", "--model", mdr_dir, "--candidates", sources["txt"], "--output", out, "--device", "cpu",
                "--search_parameters", "nprobe=3"]) == 1
    assert "search parameters 'nprobe=3' do not apply to this 'Flat' index" in capsys.readouterr().err
