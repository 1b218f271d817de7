"""``hf-dialret params``: total and per-component parameter counts, built on the meta device (no weights).

    hf-dialret params                                  # DR, SDR, MDR at base size (BERT-base + ResNet-50)
    hf-dialret params --preset tiny --format json
    hf-dialret params --text bert-base-uncased --vision microsoft/resnet-50   # configs of real backbones
    hf-dialret params --model runs/mdr                 # a saved model's config
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from transformers import AutoConfig, HfArgumentParser

ARCHITECTURE_NAMES = ("dr", "sdr", "mdr")


@dataclass
class ParamsArguments:
    architecture: str = field(
        default="all", metadata={"help": "dr, sdr, mdr, or all (the three, with the DR/SDR and DR/MDR ratios)."}
    )
    preset: str = field(
        default="base",
        metadata={"help": "base: BERT-base + ResNet-50 configs; tiny: the tiny CPU backbones (512-word vocabulary)."},
    )
    text: str | None = field(default=None, metadata={"help": "Text backbone id or directory (config only)."})
    vision: str | None = field(default=None, metadata={"help": "Vision backbone id or directory (config only)."})
    model: str | None = field(default=None, metadata={"help": "A saved hf_dialret model: count its architecture."})
    share_text_encoder: bool = field(
        default=False, metadata={"help": "Encode text responses with the context encoder."}
    )
    projection_dim: int = field(default=128, metadata={"help": "Width of the retrieval space."})
    format: str = field(default="table", metadata={"help": "table, markdown or json."})


def _configs(args: ParamsArguments) -> dict:
    from hf_dialret import ARCHITECTURES

    if args.model:
        config = AutoConfig.from_pretrained(args.model)
        return {getattr(config, "model_type", "model"): config}
    names = ARCHITECTURE_NAMES if args.architecture == "all" else (args.architecture,)
    unknown = [n for n in names if n not in ARCHITECTURES]
    if unknown:
        choices = ", ".join(ARCHITECTURE_NAMES)
        raise ValueError(f"--architecture must be one of {choices} or all, got {args.architecture!r}")
    kwargs = {"share_text_encoder": args.share_text_encoder, "projection_dim": args.projection_dim}
    if args.preset == "tiny":
        from hf_dialret.backbones import tiny_text_config, tiny_vision_config

        # A synthetic-corpus-sized vocabulary: at 30k words the embeddings would dwarf the tiny encoders.
        kwargs.update(text_config=tiny_text_config(512).to_dict(), vision_config=tiny_vision_config().to_dict())
    elif args.preset != "base":
        raise ValueError(f"--preset must be base or tiny, got {args.preset!r}")
    if args.text:
        kwargs["text_config"] = AutoConfig.from_pretrained(args.text)
    if args.vision:
        kwargs["vision_config"] = AutoConfig.from_pretrained(args.vision)
    return {name: ARCHITECTURES[name][0](**kwargs) for name in names}


def parameter_report(args: ParamsArguments) -> dict:
    """``{name: count_parameters(...)}`` plus ``ratios`` (DR total / other total) when DR is among them."""
    from hf_dialret.parameters import count_parameters

    report = {name: count_parameters(config) for name, config in _configs(args).items()}
    if "dr" in report:
        report["ratios"] = {
            f"dr/{name}": report["dr"]["total"] / report[name]["total"] for name in report if name not in ("dr",)
        }
    return report


def format_markdown(report: dict) -> str:
    names = [n for n in report if n != "ratios"]
    components = list(dict.fromkeys(c for n in names for c in report[n]["components"]))
    lines = ["| component | " + " | ".join(n.upper() for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    for component in components:
        cells = [f"{report[n]['components'][component]:,}" if component in report[n]["components"] else "-"
                 for n in names]
        lines.append(f"| {component} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{report[n]['total']:,}**" for n in names) + " |")
    if "ratios" in report:
        ratios = [f"{report['ratios'].get(f'dr/{n}', 1.0):.2f}x" for n in names]
        lines.append("| DR / this | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def format_table(report: dict) -> str:
    names = [n for n in report if n != "ratios"]
    components = list(dict.fromkeys(c for n in names for c in report[n]["components"]))
    width = max(len(c) for c in components + ["DR / this"])
    rows = [f"{'component'.ljust(width)}  " + "  ".join(n.upper().rjust(13) for n in names)]
    for component in components + ["total"]:
        values = [report[n]["total"] if component == "total" else report[n]["components"].get(component) for n in names]
        cells = [("-" if v is None else f"{v:,}").rjust(13) for v in values]
        rows.append(f"{component.ljust(width)}  " + "  ".join(cells))
    if "ratios" in report:
        rows.append(f"{'DR / this'.ljust(width)}  " + "  ".join(
            f"{report['ratios'].get(f'dr/{n}', 1.0):.2f}x".rjust(13) for n in names))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = HfArgumentParser(ParamsArguments, prog="hf-dialret params", description=__doc__.split("\n")[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    try:
        report = parameter_report(args)
    except (ValueError, OSError) as error:
        print(f"hf-dialret params: {error}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(report, indent=2))
    elif args.format == "markdown":
        print(format_markdown(report))
    elif args.format == "table":
        print(format_table(report))
    else:
        print(f"hf-dialret params: --format must be table, markdown or json, got {args.format!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
