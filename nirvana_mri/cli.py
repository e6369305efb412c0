"""``nirvana-mri``: the command-line entry point. Each subcommand lives in ``nirvana_mri/commands/``
and exposes ``HELP``, ``configure(parser)`` and ``run(args) -> int`` (the exit status)."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("reconstruct", "finetune", "benchmark", "simulate", "convert", "pretrain")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nirvana-mri",
        description="Reconstruct accelerated MRI from undersampled k-space with codecs around a frozen "
        "Nirvana backbone; fine-tune them, benchmark them, simulate data to try them on.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"nirvana_mri.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"nirvana_mri.commands.{name}":
                raise
            continue  # a command not built yet
        command = sub.add_parser(name, help=module.HELP, description=module.HELP,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.configure(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError) as err:  # user-facing problems: one line, no traceback
        print(f"nirvana-mri {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
