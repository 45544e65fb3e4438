"""The `tsunagu` command: every view of the estate is a sub-command."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .estate import load_estate
from .problems import EstateInvalid

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEFAULT_ESTATE = EXAMPLES / "small-city.yaml"

# (module, function that adds the sub-command's parser). Each module owns its command.
_COMMANDS = [
    ("tsunagu.cli", "_add_estate_commands"),
    ("tsunagu.stack_inventory", "add_command"),
    ("tsunagu.lab", "add_command"),
    ("tsunagu.generate", "add_command"),
    ("tsunagu.phonebook", "add_command"),
    ("tsunagu.deploy", "add_command"),
    ("tsunagu.verify", "add_command"),
    ("tsunagu.rehearse", "add_command"),
    ("tsunagu.pbxdata_cli", "add_command"),
    ("tsunagu.farm_cli", "add_command"),
    ("tsunagu.storm_cli", "add_command"),
]

EXIT_INVALID = 2


def _estate_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("estate", help="estate YAML file")


def load_or_exit(file: str):
    """Load an estate; on problems print each as file:line: path: message and exit 2."""
    try:
        return load_estate(file)
    except EstateInvalid as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        n = len(exc.problems)
        print(f"{file}: {n} problem{'s' * (n != 1)}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID) from None


def _validate(args) -> int:
    from .views import summary

    print(summary(load_or_exit(args.estate)))
    return 0


def _plan(args) -> int:
    from .plan import plan
    from .views import plan_table, summary

    estate = load_or_exit(args.estate)
    print(summary(estate), end="\n\n")
    print(plan_table(estate, plan(estate)))
    return 0


def _numbering(args) -> int:
    from .views import numbering_table

    print(numbering_table(load_or_exit(args.estate), show_unassigned=args.all))
    return 0


def _add_estate_commands(sub) -> None:
    p = sub.add_parser("validate", help="check an estate file and print a one-screen summary",
                       description="Check an estate file. Every problem is printed as "
                       "FILE:LINE: path.to.field: what is wrong; exit code 2 when any is found.")
    _estate_arg(p)
    p.set_defaults(func=_validate)
    p = sub.add_parser("plan", help="hosts and services per site, addresses, where handsets live")
    _estate_arg(p)
    p.set_defaults(func=_plan)
    p = sub.add_parser("numbering", help="the numbering plan and every DID's destination")
    _estate_arg(p)
    p.add_argument("--all", action="store_true", help="list unassigned DIDs too")
    p.set_defaults(func=_numbering)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsunagu",
        description="Describe a city's telephony once; deploy it and rehearse the rollout.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module, function in _COMMANDS:
        getattr(importlib.import_module(module), function)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
