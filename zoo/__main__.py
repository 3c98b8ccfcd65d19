"""`zoo`: one command for every tool. LightningCLI's fit/validate/test/predict parse recipes through `ZooCLI`;
`list`, `data`, `curriculum` and `grid` are zoo's own. `zoo --help` lists them, `zoo <command> --help` explains one."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from zoo import registry
from zoo.cli import ZooCLI
from zoo.curriculum import main as curriculum_main
from zoo.data.commands import data_main
from zoo.grid import main as grid_main

# LightningCLI's subcommands: ZooCLI parses them (and any option before them, such as `zoo --config X fit`).
LIGHTNING_COMMANDS = {
    "fit": "train a recipe (--ckpt_path resumes an interrupted fit)",
    "validate": "evaluate a recipe on its validation data and print the results table",
    "test": "evaluate a recipe on its test data and print the results table",
    "predict": "run a recipe's model on its predict data",
}


def list_components(kind: str | None = None) -> str:
    """The table `zoo list [KIND]` prints: every registered component with its one-line description."""
    lines = []
    for k, table in registry.components(kind).items():
        lines.append(f"{k}:")
        lines.extend(f"  {name:<24} {registry.describe(cls)}" for name, cls in sorted(table.items()))
    return "\n".join(lines)


def list_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="zoo list", description="Print registered components and what each does.")
    parser.add_argument("kind", nargs="?", help=f"only this kind: {', '.join(registry.components())}")
    kind = parser.parse_args(argv).kind
    try:
        print(list_components(kind))
    except KeyError as err:  # an unknown kind, with the registry's did-you-mean
        sys.exit(str(err.args[0]))


TOOLS: dict[str, tuple[str, Callable[[list[str]], None]]] = {
    "list": ("print every registered component (of one KIND) with its one-line description", list_main),
    "data": ("dataset tools: `zoo data synth` writes the synthetic dataset in every published format", data_main),
    "curriculum": ("run a curriculum's stages in order, each from the previous weights", curriculum_main),
    "grid": ("fit an ablation grid's runs and collect their results into one table", grid_main),
}


def usage() -> str:
    """The overview `zoo --help` prints: every command with one line on what it does."""
    commands = {**LIGHTNING_COMMANDS, **{name: description for name, (description, _) in TOOLS.items()}}
    lines = ["usage: zoo <command> [options]", "", "commands:"]
    lines += [f"  {name:<11} {description}" for name, description in commands.items()]
    lines += ["", "`zoo <command> --help` shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        sys.exit(usage())
    if argv[0] in ("-h", "--help"):
        print(usage())
    elif argv[0] in TOOLS:
        TOOLS[argv[0]][1](argv[1:])
    else:
        ZooCLI(args=argv)


if __name__ == "__main__":
    main()
