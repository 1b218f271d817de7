"""`hf-dialret params`: JSON, markdown and table output, and clear errors."""

from __future__ import annotations

import json

from hf_dialret.cli import main as cli_main
from hf_dialret.commands.params import main


def test_json_report_has_every_architecture_and_the_ratios(capsys):
    assert main(["--preset", "tiny", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"dr", "sdr", "mdr", "ratios"}
    assert report["ratios"]["dr/sdr"] == report["dr"]["total"] / report["sdr"]["total"]
    assert "intent_encoder" in report["dr"]["components"] and "intent_head" not in report["mdr"]["components"]


def test_markdown_and_table_through_the_cli(capsys):
    assert cli_main(["params", "--preset", "tiny", "--architecture", "mdr", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| component | MDR |") and "| **total** |" in out and "DR / this" not in out
    assert main(["--preset", "tiny", "--share_text_encoder"]) == 0
    table = capsys.readouterr().out
    assert "response_text " not in table and table.splitlines()[-1].startswith("DR / this")


def test_saved_model_is_counted(tmp_path, capsys, tiny_config):
    from hf_dialret import SharedDualRetrieverConfig, SharedDualRetrieverModel, count_parameters

    model = SharedDualRetrieverModel(tiny_config(SharedDualRetrieverConfig))
    model.save_pretrained(tmp_path)
    assert main(["--model", str(tmp_path), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dialret_shared_dual_retriever"]["total"] == count_parameters(model)["total"]


def test_bad_options_fail_with_a_message(capsys):
    assert main(["--architecture", "xyz"]) == 2
    assert "--architecture must be one of dr, sdr, mdr" in capsys.readouterr().err
    assert main(["--preset", "huge"]) == 2
    assert "--preset must be base or tiny" in capsys.readouterr().err
