"""Every file a Trainer writes is whole: checkpoints through train/checkpoints.py's staging folder, the
final model, trainer_state.json and the *_results.json files by write-then-rename.

`with_atomic_saves(cls)` puts `AtomicSaves` in front of any transformers Trainer (ours, or trl's
RewardTrainer, DPOTrainer, KTOTrainer, GRPOTrainer, RLOOTrainer and the stages' subclasses of them).
The hook is transformers' own seam: `_save_checkpoint` asks `_get_output_dir` where the run's folder
is; while a checkpoint is saved, that answer is the staging folder, so transformers and trl (trl's
`_save_checkpoint` overrides write extra files through the same call) write every file there, and
their rotation sees only the new checkpoint. Rotation then runs on the real folder, over complete
checkpoints only (checkpoints.rotate).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneforge.atomic import write_atomic
from tuneforge.train import testhooks
from tuneforge.train.checkpoints import STATE, rotate, staged, staged_files, write_through
from tuneforge.train.disk import save_errors


class AtomicSaves:
    """Mixin for transformers.Trainer subclasses; see the module docstring."""

    _tuneforge_staging: str | None = None

    def _get_output_dir(self, trial: Any) -> str:
        return self._tuneforge_staging or super()._get_output_dir(trial)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        run_dir = Path(super()._get_output_dir(trial))
        step = self.state.global_step
        one_renamer = dict(renamer=self.args.should_save, barrier=self.accelerator.wait_for_everyone)
        with save_errors(str(run_dir / f"checkpoint-{step}"), run_dir), staged(run_dir, step, **one_renamer) as folder:
            self._tuneforge_staging = str(folder.parent)
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self._tuneforge_staging = None
            self._point_best_at(folder, run_dir / folder.name)
        if self.args.should_save:
            rotate(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint)

    def _point_best_at(self, folder: Path, final: Path) -> None:
        """load_best_model_at_end: transformers found the best checkpoint in the staging folder; it will
        live at `final`."""
        best = self.state.best_model_checkpoint
        if best and Path(best).resolve() == folder.resolve():
            self.state.best_model_checkpoint = str(final)
            if self.args.should_save:
                self.state.save_to_json(str(folder / STATE))

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        testhooks.pause_in_save()
        testhooks.fail_save(self.state.global_step)
        super()._save_optimizer_and_scheduler(output_dir)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        if _internal_call:  # inside _save_checkpoint: already in the staging folder
            return super().save_model(output_dir, _internal_call)
        target = Path(output_dir or self.args.output_dir)
        with save_errors(f"the final model to {target}", self.args.output_dir), \
                staged_files(target, renamer=self.args.should_save, barrier=self.accelerator.wait_for_everyone) as tmp:
            super().save_model(str(tmp), _internal_call)

    def save_metrics(self, split: str, metrics: dict[str, Any], combined: bool = True) -> None:
        """As Trainer.save_metrics (<split>_results.json, merged into all_results.json), written whole."""
        if not self.is_world_process_zero():
            return
        out = Path(self.args.output_dir)
        self._write_json(out / f"{split}_results.json", metrics)
        if combined:
            path = out / "all_results.json"
            try:
                merged = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            except ValueError:
                merged = {}  # cut short by an earlier crash: this run's figures replace it
            self._write_json(path, {**merged, **metrics})

    def _write_json(self, path: Path, data: dict[str, Any]) -> None:
        with save_errors(str(path), self.args.output_dir):
            write_atomic(path, json.dumps(data, indent=4, sort_keys=True))

    def save_state(self) -> None:
        """trainer_state.json of the finished run, written whole (written last: its presence with the
        last step says the final files are all there)."""
        if not self.is_world_process_zero():
            return
        path = Path(self.args.output_dir) / STATE
        with save_errors(str(path), self.args.output_dir):
            write_through(path, self.state.save_to_json)


def with_atomic_saves(trainer_class: type) -> type:
    """`trainer_class` with AtomicSaves in front (a subclass of the same name)."""
    if issubclass(trainer_class, AtomicSaves):
        return trainer_class
    return type(trainer_class.__name__, (AtomicSaves, trainer_class),
                {"__module__": trainer_class.__module__, "__qualname__": trainer_class.__qualname__})
