"""`zoo`: LightningCLI's fit/validate/test/predict over ZooModule + ZooDataModule, plus `zoo list`, `zoo data`,
`zoo curriculum` (a recipe's stages in order) and `zoo grid` (an ablation grid and its comparison table)."""

from __future__ import annotations

import re
import sys

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from zoo import registry
from zoo.data import ZooDataModule
from zoo.module import ZooModule

TRAINER_DEFAULTS = {"use_distributed_sampler": False}  # the task batch sampler already splits across ranks


class ZooArgumentParser(LightningArgumentParser):
    """Adds the registry's did-you-mean to jsonargparse's errors about unknown component names."""

    def error(self, message: str, *args, **kwargs):  # type: ignore[override]
        for name in re.findall(r"(?:import path string: |class_path=')([\w.]+)", message):
            hint = registry.find_any(name)
            if hint:
                message = f"{message}\n{hint}"
                break
        return super().error(message, *args, **kwargs)


class ZooCLI(LightningCLI):
    """One command line for every recipe: several --config files layer, later ones win."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            ZooModule,
            ZooDataModule,
            parser_class=ZooArgumentParser,
            parser_kwargs={"parser_mode": "omegaconf+"},
            save_config_kwargs={"overwrite": True},
            trainer_defaults=TRAINER_DEFAULTS,
            auto_configure_optimizers=False,
            args=args,
            run=run,
        )


def list_components(kind: str | None = None) -> str:
    """The table `zoo list [KIND]` prints: every registered component with its one-line description."""
    lines = []
    for k, table in registry.components(kind).items():
        lines.append(f"{k}:")
        lines.extend(f"  {name:<24} {registry.describe(cls)}" for name, cls in sorted(table.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["list"]:
        if len(argv) > 2:
            sys.exit("usage: zoo list [KIND]")
        try:
            print(list_components(argv[1] if len(argv) == 2 else None))
        except KeyError as err:
            sys.exit(str(err.args[0]))
        return
    if argv[:1] == ["data"]:
        from zoo.data.commands import data_main

        data_main(argv[1:])
        return
    if argv[:1] == ["curriculum"]:
        from zoo.curriculum import main as curriculum_main

        curriculum_main(argv[1:])
        return
    if argv[:1] == ["grid"]:
        from zoo.grid import main as grid_main

        grid_main(argv[1:])
        return
    ZooCLI(args=argv)


if __name__ == "__main__":
    main()
