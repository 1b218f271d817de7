"""The ``hf-dialret`` command: ``hf-dialret <command> [options]``.

Each command lives in ``hf_dialret/commands/<name>.py`` and exposes ``main(argv) -> int``; its options are
``HfArgumentParser`` dataclasses, so ``hf-dialret <command> --help`` lists them with their help text. Commands are
imported only when run, so ``hf-dialret --help`` does not load them all; it still pays for importing the package
(torch, transformers with torchvision, peft: ~11 s on a busy 2-core machine, of which hf_dialret's own modules ~0.7 s).
"""

from __future__ import annotations

import importlib
import sys

#: command name -> (module, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("hf_dialret.commands.train", "train a retriever (DR, SDR, MDR, DialCLIP) and evaluate it"),
    "evaluate": ("hf_dialret.commands.evaluate", "evaluate a saved retriever on every protocol"),
    "params": ("hf_dialret.commands.params", "report total and per-component parameter counts"),
    "index": ("hf_dialret.commands.index", "encode a candidate pool into a saved ResponseIndex"),
    "search": ("hf_dialret.commands.search", "query a saved ResponseIndex with a dialogue"),
    "push": ("hf_dialret.commands.push", "push a trained model or adapter to the Hub with a model card"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: hf-dialret <command> [options]", "", "Multimodal dialogue response retrieval.", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "Run `hf-dialret <command> --help` for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"hf-dialret: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
