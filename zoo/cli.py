"""The one command line: LightningCLI over ZooModule + ZooDataModule, whose `--config` files layer (later ones win)
and bring along the recipes they declare as their base in a header line `# base: a.yaml [b.yaml ...]`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from zoo import registry
from zoo.data import ZooDataModule
from zoo.module import ZooModule
from zoo.weights import unreadable

TRAINER_DEFAULTS = {"use_distributed_sampler": False}  # the task batch sampler already splits across ranks
BASE_LINE = re.compile(r"^#\s*base:\s*(.+)$")


def resolve(name: str, referrer: str | Path, what: str) -> Path:
    """A recipe path as files name each other (from the repository root): tried from the working directory,
    then from each folder above the file that names it, so commands work from any directory."""
    if Path(name).is_file():
        return Path(name)
    for folder in Path(referrer).resolve().parents:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{referrer}: {what} '{name}' does not exist")


def recipe_bases(path: str | Path) -> list[Path]:
    """The recipes `path` declares it layers over (its `# base:` header line), recursively, in layering order."""
    bases: list[Path] = []
    for line in Path(path).read_text().splitlines():
        if not line.startswith("#"):
            break
        match = BASE_LINE.match(line)
        if match:
            for name in match.group(1).split():
                base = resolve(name, path, "`# base:` recipe")
                bases += [*recipe_bases(base), base]
    return bases


def recipe_layers(paths: list[str | Path]) -> list[Path]:
    """Config files in layering order: each recipe preceded by its declared bases (each file once)."""
    ordered: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        for p in [*recipe_bases(path), Path(path)]:
            if p.resolve() not in seen:
                seen.add(p.resolve())
                ordered.append(p)
    return ordered


def with_bases(args: list[str]) -> list[str]:
    """Command-line arguments with every `--config FILE` (or `-c FILE`, `--config=FILE`) replaced by the file's
    layers: its `# base:` recipes first, each file once over the whole command line, so an overlay alone and an
    overlay layered over its base by hand parse the same. Values that are not files (inline YAML) pass through."""
    out: list[str] = []
    seen: set[Path] = set()
    rest = iter(args)
    for arg in rest:
        if arg in ("-c", "--config"):
            value = next(rest, None)
        elif arg.startswith("--config="):
            value = arg.partition("=")[2]
        else:
            out.append(arg)
            continue
        if value is None or not Path(value).is_file():  # no value, inline YAML or a missing file: jsonargparse says
            out += [arg] if value is None else ["--config", value]
            continue
        for layer in recipe_layers([value]):
            if layer.resolve() not in seen:
                seen.add(layer.resolve())
                out += ["--config", str(layer)]
    return out


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
    """One command line for every recipe: several --config files layer, later ones win, bases first."""

    def __init__(self, args: ArgsType = None, run: bool = True) -> None:
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

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parses `args` (the command line's own when None) with `# base:` recipes put first. LightningCLI warns
        whenever it is given `args` while `sys.argv` holds more than the program name (as under `zoo fit ...`, a
        curriculum or pytest), so `sys.argv` is cut to the program name while it parses."""
        args = sys.argv[1:] if args is None else args
        if isinstance(args, list):
            args = with_bases(args)
        argv, sys.argv = sys.argv, sys.argv[:1]
        try:
            super().parse_arguments(parser, args)
        finally:
            sys.argv = argv

    def _parse_ckpt_path(self) -> None:
        """LightningCLI reads `--ckpt_path`'s hyper-parameters; a damaged file says so in one line naming it
        (its parse errors exit through the parser, so any exception here is the file's)."""
        try:
            super()._parse_ckpt_path()
        except Exception as err:
            path = self.config[self.config.subcommand].get("ckpt_path")
            advice = "pass another checkpoint (e.g. an earlier epoch's) or drop --ckpt_path to start afresh"
            raise unreadable(path, "--ckpt_path", err, advice) from None

    def before_instantiate_classes(self) -> None:
        """A checkpoint stands alone: with `--ckpt_path` its weights are restored, so `model.init_from` (from the
        recipe, or stored by an older checkpoint) is not loaded: the stage it names may be gone. The saved config
        still names it (`after_instantiate_classes`), as the record of where the run started."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        self._unread_init_from = None
        if config.get("ckpt_path") and config.model.get("init_from"):
            rank_zero_info(f"--ckpt_path given: not loading model.init_from ({config.model.init_from})")
            self._unread_init_from, config.model.init_from = config.model.init_from, None

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        if self._unread_init_from is not None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            config.model.init_from = self._unread_init_from
