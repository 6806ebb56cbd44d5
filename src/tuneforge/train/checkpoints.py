"""Checkpoint folders that are whole or absent.

A save writes `checkpoint-N` inside a temporary sibling, `.tmp-checkpoint-N/checkpoint-N`; once every
file is on disk (fsynced), a manifest of the files and their sizes, `tuneforge_complete.json`, is
written last, and one process renames the folder into place. A kill, a full disk or a crash before
the rename leaves only the temporary folder (no `checkpoint-` name, so neither we nor transformers'
`get_last_checkpoint` take it for a checkpoint); the next run removes it, saying so.

Why by hand: transformers' `_save_checkpoint` writes straight into `checkpoint-N` (trainer_state.json
last) and its own temp-dir-and-rename attempt was reverted (every rank renamed, issue #27925); here
exactly one process, the one `args.should_save` names, writes the manifest and renames.

A folder counts as complete when its manifest lists files that are all there at their sizes, or, for
folders written by other tools (LLaMA-Factory, older tuneforge; no manifest), when its
trainer_state.json, which transformers writes last, is whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tuneforge.atomic import write_atomic
from tuneforge.log import note
from tuneforge.train import testhooks

MANIFEST = "tuneforge_complete.json"
STAGING_PREFIX = ".tmp-checkpoint-"
FINAL_STAGING = ".tmp-final"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STAGING_RE = re.compile(r"^\.(tmp-checkpoint-\d+|tmp-final|old-checkpoint-\d+)$")
STATE = "trainer_state.json"


def step_of(folder: str | Path) -> int:
    match = CHECKPOINT_RE.match(Path(folder).name)
    return int(match.group(1)) if match else -1


def _folders(output_dir: str | Path, pattern: re.Pattern) -> list[Path]:
    path = Path(output_dir)
    return [p for p in path.iterdir() if pattern.match(p.name) and p.is_dir()] if path.is_dir() else []


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Every checkpoint-N folder in output_dir, complete or not, oldest step first."""
    return sorted(_folders(output_dir, CHECKPOINT_RE), key=step_of)


def incomplete_reason(folder: str | Path) -> str | None:
    """Why `folder` is not a whole checkpoint; None when it is."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
            listed = {str(name): int(size) for name, size in files.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return f"{MANIFEST} is unreadable"
        for name, size in listed.items():
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != size:
                return f"{name} has {path.stat().st_size} bytes, not {size}"
        return None
    state = folder / STATE
    if not state.is_file():
        return f"no {MANIFEST} and no {STATE}: its save was cut short"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{STATE} is cut short"
    return None


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    return [p for p in checkpoint_dirs(output_dir) if incomplete_reason(p) is None]


def staging_dirs(output_dir: str | Path) -> list[Path]:
    """The temporary folders of saves that did not finish (see `staged`, `staged_files`, `replace_folder`)."""
    return sorted(_folders(output_dir, STAGING_RE))


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # folders cannot be opened on some systems (Windows): the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # a folder on a filesystem without directory fsync
    finally:
        os.close(fd)


def write_manifest(folder: Path, step: int) -> None:
    """Flush every file of `folder`, then list them with their sizes in the manifest, written last."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            fsync_path(path)
            files[path.relative_to(folder).as_posix()] = path.stat().st_size
    write_atomic(folder / MANIFEST, json.dumps({"format": 1, "step": step, "files": files}, indent=1) + "\n")
    fsync_path(folder)


def replace_folder(new: Path, final: Path) -> None:
    """Rename `new` to `final`. A complete folder already there (a resumed run saving the same step
    again) is replaced; an incomplete one is renamed aside, never deleted, and named."""
    if final.exists():
        if incomplete_reason(final) is None:
            old = final.with_name(f".old-{final.name}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(new, final)
            shutil.rmtree(old, ignore_errors=True)
            note(f"replaced {final} with the one saved now")
            return
        aside, n = final.with_name(f"{final.name}.incomplete"), 1
        while aside.exists():
            n += 1
            aside = final.with_name(f"{final.name}.incomplete{n}")
        os.replace(final, aside)
        note(f"{final} was incomplete ({incomplete_reason(aside)}); moved it to {aside.name}, untouched")
    os.replace(new, final)
    fsync_path(final.parent)


def _nothing() -> None:
    return None


@contextmanager
def staged(output_dir: str | Path, step: int, *, renamer: bool = True,
           barrier: Callable[[], None] = _nothing) -> Iterator[Path]:
    """Yield the folder to write `checkpoint-<step>` into. When the block ends, the renamer (one process)
    writes the manifest and renames the folder into place; if it raises, the temporary folder is removed
    and the earlier checkpoints are untouched. `barrier` waits for every process (multi-GPU)."""
    out = Path(output_dir)
    root = out / f"{STAGING_PREFIX}{step}"
    folder = root / f"checkpoint-{step}"
    if renamer:
        shutil.rmtree(root, ignore_errors=True)  # the leftover of a killed save of this very step
        folder.mkdir(parents=True)
    barrier()
    try:
        yield folder
        barrier()
        if renamer:
            testhooks.pause_in_save()
            write_manifest(folder, step)
            replace_folder(folder, out / folder.name)
    finally:
        if renamer:
            shutil.rmtree(root, ignore_errors=True)


def rotate(output_dir: str | Path, limit: int | None, protect: str | None = None) -> list[Path]:
    """save_total_limit: delete the oldest complete checkpoints beyond `limit`, as transformers'
    rotate_checkpoints would (the newest and `protect`, the best one, always stay), but counting and
    deleting complete checkpoints only, ordered by step: incomplete folders are the user's to judge."""
    if not limit or limit <= 0:
        return []
    complete = complete_checkpoints(output_dir)
    protected = {complete[-1]} if complete else set()
    if protect:
        protected |= {p for p in complete if p.resolve() == Path(protect).resolve()}
    keep = max(limit, len(protected))
    removed = []
    for path in complete:
        if len(complete) - len(removed) <= keep:
            break
        if path not in protected:
            shutil.rmtree(path)
            removed.append(path)
    return removed


def replace_files(staging: Path, target: Path) -> None:
    """Move what was written to `staging` into `target` entry by entry, each by one atomic rename (files
    flushed first), so every final file is the old version or the new one, never half of one."""
    for entry in sorted(staging.iterdir()):
        dest = target / entry.name
        if entry.is_dir():
            for path in entry.rglob("*"):
                if path.is_file():
                    fsync_path(path)
            old = target / f".old-{entry.name}"
            if dest.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(dest, old)
            os.replace(entry, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            fsync_path(entry)
            os.replace(entry, dest)
    fsync_path(target)


@contextmanager
def staged_files(target: str | Path, *, renamer: bool = True, barrier: Callable[[], None] = _nothing) -> Iterator[Path]:
    """Yield a temporary folder inside `target`; what is written there replaces `target`'s files of the
    same names when the block ends (see replace_files), or is removed if it raises."""
    target = Path(target)
    staging = target / FINAL_STAGING
    if renamer:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier()
    try:
        yield staging
        barrier()
        if renamer:
            replace_files(staging, target)
    finally:
        if renamer:
            shutil.rmtree(staging, ignore_errors=True)


def write_through(path: str | Path, write: Callable[[str], None]) -> None:
    """`write(temporary path)`, then flush and rename it over `path` (for writers that take a path, such
    as TrainerState.save_to_json)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(str(tmp))
        fsync_path(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
