"""Running one stage as a `zoo fit` in its own folder: what a curriculum's stage and a grid's run share.

The folder holds the run's checkpoints and resolved `config.yaml` (`<folder>/checkpoints/`), its logs and
results.json (`<folder>/lightning_logs/`) and, once it finished, `<folder>/done.json` (its record) and
`<folder>/definition.yaml` (what defined it: the resolved config and the hash of the checkpoint it started from).
Running it again skips a finished run whose definition and checkpoint are unchanged, refuses one whose definition
changed (or whose checkpoint was damaged) unless told to rerun it, and resumes an interrupted one from its
`last.ckpt` (`--ckpt_path`). A damaged done.json or resume checkpoint is set aside, with a warning, and the run
starts again.
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
import warnings
import zipfile
from pathlib import Path

import yaml
from jsonargparse import Namespace
from lightning.pytorch.trainer.states import TrainerStatus
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

from zoo.cli import ZooCLI

CHECKPOINT = "lightning.pytorch.callbacks.ModelCheckpoint"
DONE = "done.json"
DEFINITION = "definition.yaml"


class StageChangedError(RuntimeError):
    """Raised when a finished stage's definition or checkpoint no longer matches what its done.json recorded."""


def is_plan(path: str | Path) -> bool:
    """Whether a YAML file under recipes/ is a plan (a curriculum's `stages` or a grid's `runs`), not a recipe."""
    data = yaml.safe_load(Path(path).read_text())
    return isinstance(data, dict) and ("stages" in data or "runs" in data) and "model" not in data


class StageCLI(ZooCLI):
    """A fit whose checkpoints go to the stage folder and whose resolved config is saved beside them."""

    def __init__(self, folder: Path, args: list[str]) -> None:
        self.folder = folder
        with warnings.catch_warnings():
            # The stage folder is the run's own: its config (and, when resuming, its checkpoints) are there.
            warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
            super().__init__(args=args)

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    def before_instantiate_classes(self) -> None:
        """Point every ModelCheckpoint of the recipe at the stage folder (adding one if it has none), so the
        runner knows where the stage's `last.ckpt` is, and have it save when the fit is interrupted."""
        super().before_instantiate_classes()
        trainer = self.config[self.subcommand].trainer
        callbacks = list(trainer.callbacks or [])
        savers = [c for c in callbacks if getattr(c, "class_path", "") == CHECKPOINT]
        if not savers:
            saver = Namespace(class_path=CHECKPOINT, init_args=Namespace(save_last=True))
            callbacks.append(saver)
            savers = [saver]
        for saver in savers:
            saver.init_args.dirpath = str(self.checkpoints)
        savers[0].init_args.save_last = True
        # Preemption (SIGTERM, as SLURM and spot nodes end jobs) stops Lightning after the current batch with an
        # exception: saving then leaves a `last.ckpt` the rerun resumes instead of redoing the stage.
        savers[0].init_args.save_on_exception = True
        trainer.callbacks = callbacks

    def before_fit(self) -> None:
        if rank_zero_only.rank == 0:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            parser = self._parser(self.subcommand)
            parser.save(self.config[self.subcommand], self.checkpoints / "config.yaml", skip_none=False, overwrite=True)


def last_checkpoint(folder: Path) -> Path:
    """Where StageCLI keeps a stage's latest state: the next stage's weights and this one's resume point."""
    return folder / "checkpoints" / "last.ckpt"


def fit_args(folder: Path, configs: list[str], args: list[str], init_from: Path | None = None) -> list[str]:
    """The `zoo fit` arguments of one stage: its recipes (the CLI puts their `# base:` recipes first), its
    overrides, its folder, the weights it starts from and, after an interruption, the checkpoint it resumes."""
    out = ["fit", *(arg for config in configs for arg in ("--config", str(config)))]
    out += [*args, f"--trainer.default_root_dir={folder}"]
    if init_from is not None:
        out.append(f"--model.init_from={init_from}")
    if last_checkpoint(folder).is_file():
        out.append(f"--ckpt_path={last_checkpoint(folder)}")
    return out


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class _Resolve(ZooCLI):
    """Parses a stage's arguments into its resolved config without building anything or drawing a seed (a recipe
    with `seed_everything: true` would otherwise differ at every parse)."""

    def _set_seed(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


def stage_definition(argv: list[str], init_from: Path | None) -> dict:
    """What defines a stage: its resolved config (recipes layered, overrides applied; not where it resumes from)
    and the hash of the checkpoint it starts from, which changes when an earlier stage is rerun."""
    args = [a for a in argv[1:] if not a.startswith("--ckpt_path=")]
    cli = _Resolve(args=args, run=False)
    config = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
    return {"config": config, "init_from_sha256": sha256(init_from) if init_from and init_from.is_file() else None}


def _flat(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree}


def changed_keys(old: dict, new: dict) -> list[str]:
    """The settings (dotted keys) whose values differ between two definitions."""
    a, b = _flat(old), _flat(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, "<unset>") != b.get(k, "<unset>"))


def _read_record(done: Path) -> dict | None:
    """A done.json's record, or None (with a warning, the file set aside) when it is empty or not a record, so
    the run is redone instead of every later command stopping on it."""
    try:
        record = json.loads(done.read_text())
        if isinstance(record, dict) and "checkpoint" in record:
            return record
        problem = "it holds no run record"
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        problem = f"{type(err).__name__}: {err}"
    rank_zero_warn(f"{done} is unreadable ({problem}); set aside as {done.name}.damaged, rerunning the run")
    if rank_zero_only.rank == 0:
        done.replace(done.with_name(done.name + ".damaged"))
    return None


def _set_aside(path: Path, suffix: str) -> Path:
    """Rename `path` to the first free `<path><suffix>[-N]`, so nothing a user may want is deleted."""
    target, n = path.with_name(path.name + suffix), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{suffix}-{n}")
    if rank_zero_only.rank == 0:
        path.replace(target)
    return target


def _check_resume_point(folder: Path) -> None:
    """A `last.ckpt` that is not a whole checkpoint (a write cut short) is set aside with a warning: the run then
    starts over instead of failing on it at every rerun."""
    last = last_checkpoint(folder)
    if not last.is_file():
        return
    try:
        with zipfile.ZipFile(last) as archive:
            bad = archive.testzip()
        problem = f"member {bad} is corrupt" if bad else None
    except zipfile.BadZipFile as err:
        problem = str(err)
    if problem:
        target = _set_aside(last, ".damaged")
        rank_zero_warn(f"{last} is damaged ({problem}); set aside as {target.name}, starting the run over")


def _finished(kind: str, name: str, folder: Path, record: dict, definition: dict, rerun_changed: bool) -> bool:
    """Whether a recorded run still stands: same definition, same checkpoint. Otherwise raise, or (with
    `rerun_changed`) set its checkpoints and record aside and return False so it runs again."""
    old_path = folder / DEFINITION
    try:
        old = yaml.safe_load(old_path.read_text()) if old_path.is_file() else None
    except (yaml.YAMLError, UnicodeDecodeError):  # a damaged record: reported below as edited
        old = None
    checkpoint = Path(record["checkpoint"])
    if "definition_sha256" not in record:  # recorded before definitions were kept: nothing to compare
        rank_zero_warn(f"{kind} '{name}': {folder / DONE} records no definition; trusting it as finished")
        return True
    if not isinstance(old, dict) or _digest(old) != record["definition_sha256"]:
        problem = f"its recorded definition {old_path} is missing, damaged or was edited"
    elif changed := changed_keys(old, definition):
        shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
        problem = f"its definition changed since it finished ({shown})"
    elif not checkpoint.is_file():
        problem = f"its checkpoint {checkpoint} is missing"
    elif sha256(checkpoint) != record.get("checkpoint_sha256"):
        problem = f"its checkpoint {checkpoint} is damaged or was replaced (sha256 differs from {DONE})"
    else:
        return True
    if not rerun_changed:
        raise StageChangedError(
            f"{kind} '{name}' in {folder}: {problem}. Rerun with --rerun-changed to redo it (its old checkpoints "
            f"are set aside), or restore what it was run with."
        )
    rank_zero_warn(f"{kind} '{name}': {problem}; rerunning it (--rerun-changed)")
    if (folder / "checkpoints").exists():
        _set_aside(folder / "checkpoints", ".superseded")
    _set_aside(folder / DONE, ".superseded")
    return False


def _digest(definition: dict) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()


def run_stage(
    kind: str,
    name: str,
    folder: Path,
    configs: list[str],
    args: list[str],
    init_from: Path | None = None,
    rerun_changed: bool = False,
) -> dict:
    """Fit one stage (`kind` 'stage' of a curriculum, 'run' of a grid) in `folder` unless its done.json says it
    finished with the same definition (resolved config, starting checkpoint) and checkpoint; a changed one raises
    StageChangedError unless `rerun_changed`. Returns its record, that done.json's content: `{kind: name}`, the fit's
    arguments, checkpoint and its sha256, config, the definition's sha256, log dir, steps, seconds, whether it
    resumed and its latest validation results."""
    done = folder / DONE
    definition = stage_definition(fit_args(folder, configs, args, init_from), init_from)
    record = _read_record(done) if done.is_file() else None
    if record is not None and _finished(kind, name, folder, record, definition, rerun_changed):
        rank_zero_info(f"{kind} '{name}' already finished, skipping ({done})")
        return record
    _check_resume_point(folder)
    resumed = last_checkpoint(folder).is_file()
    rank_zero_info(f"{kind} '{name}': {'resuming' if resumed else 'starting'} in {folder}")
    start = time.perf_counter()
    argv = fit_args(folder, configs, args, init_from)
    cli = StageCLI(folder, argv)
    trainer = cli.trainer
    if trainer.state.status != TrainerStatus.FINISHED or trainer.interrupted:
        raise RuntimeError(f"{kind} '{name}' did not finish ({trainer.state.status})")
    results = Path(trainer.log_dir or folder) / "results.json"
    record = {
        kind: name,
        "args": argv,
        "checkpoint": str(last_checkpoint(folder)),
        "checkpoint_sha256": sha256(last_checkpoint(folder)),
        "config": str(cli.checkpoints / "config.yaml"),
        "definition_sha256": _digest(definition),
        "log_dir": str(trainer.log_dir),
        "global_step": trainer.global_step,
        "seconds": round(time.perf_counter() - start, 1),
        "resumed": resumed,
        "results": json.loads(results.read_text()) if results.is_file() else {},
    }
    if trainer.is_global_zero:
        (folder / DEFINITION).write_text(yaml.safe_dump(definition, sort_keys=False))
        done.write_text(json.dumps(record, indent=2) + "\n")
    del cli, trainer  # free this stage's model before the next one is built
    gc.collect()
    return record
