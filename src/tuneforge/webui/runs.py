"""Web UI runs: detached `tuneforge train` processes, found again from the files they leave.

A run is a folder (its output_dir) holding the YAML the UI wrote (`webui_config.yaml`), a process
file (`webui_run.json`: command, device set, pid and process group), the log (`webui_train.log`,
a file: never a pipe the UI would have to drain) and, once it ended, `webui_exit.json` (written by
`child.py`, the group's leader). Nothing lives only in the server's memory, so a reloaded page or a
restarted server finds every run again by scanning the output root. Runs on the same device set
(CUDA_VISIBLE_DEVICES) queue and start one after another. Stop sends SIGTERM to the run's process
group (graceful stop: the current step ends, a checkpoint is saved); a second Stop sends SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuneforge.atomic import write_atomic
from tuneforge.config.errors import ConfigError
from tuneforge.webui.child import EXIT_FILE, LOG_FILE, RUN_FILE

CONFIG_FILE = "webui_config.yaml"
MARKERS = (RUN_FILE, "training_args.yaml", "trainer_log.jsonl")  # a folder holding one of these is a run
EXIT_STATUS = {0: "finished", 75: "stopped", 130: "killed", 143: "killed", -9: "killed", -15: "killed"}
ACTIVE = ("queued", "running", "stopping")


def train_command(config_path: str | Path) -> list[str]:
    """The command a run executes, as a user would type it."""
    return ["tuneforge", "train", str(config_path)]


@dataclass
class Run:
    path: Path
    status: str
    info: dict[str, Any] = field(default_factory=dict)
    exit: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        """The flat config the run was given: the UI's YAML, else the one `train` wrote."""
        return self._yaml(CONFIG_FILE, "training_args.yaml")

    @property
    def resolved(self) -> dict[str, Any]:
        """Every key with the value it trained with (`train` writes training_args.yaml, defaults included)."""
        return self._yaml("training_args.yaml", CONFIG_FILE)

    def _yaml(self, *names: str) -> dict[str, Any]:
        for name in names:
            path = self.path / name
            if path.is_file():
                try:
                    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                except yaml.YAMLError:
                    return {}
        return {}

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from /proc; None when it is gone or /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]


def alive(info: dict[str, Any]) -> bool:
    """Is the run's group leader still running (and still the process we started, not a reused pid)?"""
    pid = info.get("pid")
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    if stat is None:
        return not Path("/proc").is_dir()
    state, started = stat
    return state != "Z" and (not info.get("proc_start") or started == info["proc_start"])


def read_run(path: Path) -> Run:
    info, end = _read_json(path / RUN_FILE), _read_json(path / EXIT_FILE)
    if not info:  # a run started from the command line
        done = any((path / name).is_file() for name in ("all_results.json", "train_results.json"))
        return Run(path, "finished" if done else "unknown")
    if end:
        status = "cancelled" if end.get("cancelled") else EXIT_STATUS.get(end.get("code"), "failed")
    elif not info.get("pid"):
        status = "queued"
    elif alive(info):
        status = "stopping" if info.get("stops") else "running"
    else:
        status = "killed"
    return Run(path, status, info, end)


def discover(root: str | Path, depth: int = 4) -> list[Run]:
    """Every run under the output root, newest first."""
    root = Path(root)
    found: list[Path] = []
    if root.is_dir():
        base = len(root.parts)
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            dirs[:] = [d for d in dirs if not d.startswith((".", "checkpoint-")) and len(here.parts) - base < depth]
            if any(name in files for name in MARKERS):
                found.append(here)
    runs = [read_run(path) for path in found]
    return sorted(runs, key=lambda r: (r.info.get("created") or _mtime(r.path)), reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


class RunManager:
    """Starts, queues and stops the runs under one output root."""

    def __init__(self, root: str | Path, cwd: str | Path | None = None):
        self.root = Path(root)
        self.cwd = Path(cwd or Path.cwd())
        self.lock = threading.RLock()
        self.procs: dict[Path, subprocess.Popen] = {}  # the runs this server started: reaped in tick()
        self.known: set[Path] = set()  # runs submitted here (an output_dir outside the root included)

    def submit(self, output_dir: str | Path, yaml_text: str, devices: str = "") -> Run:
        """Write the run's files into output_dir and queue it; it starts at once when its device set is free.
        A folder that already holds a UI run is refused (two clicks on Start give one run)."""
        out = Path(output_dir)
        with self.lock:
            if (out / RUN_FILE).is_file():
                raise ConfigError(f"output_dir '{out}' already holds a run started from the web UI "
                                  f"({read_run(out).status}); choose another output_dir")
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(out / CONFIG_FILE, yaml_text)
            info = {"command": train_command(out / CONFIG_FILE), "cwd": str(self.cwd), "devices": devices.strip(),
                    "created": time.time(), "pid": None}
            write_atomic(out / RUN_FILE, json.dumps(info, ensure_ascii=False, indent=1))
            self.known.add(out.resolve())
            self.tick()
            return read_run(out)

    def tick(self) -> None:
        """Reap ended children, then start queued runs (oldest first) whose device set is free."""
        with self.lock:
            for path, proc in list(self.procs.items()):
                if proc.poll() is not None:
                    del self.procs[path]
            paths = {r.path.resolve() for r in discover(self.root)} | set(self.known)
            runs = [read_run(p) for p in paths]
            busy = {r.info.get("devices", "") for r in runs if r.status in ("running", "stopping")}
            queued = sorted((r for r in runs if r.status == "queued"), key=lambda r: r.info.get("created", 0))
            for run in queued:
                devices = run.info.get("devices", "")
                if devices not in busy:
                    self._start(run)
                    busy.add(devices)

    def _start(self, run: Run) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if run.info.get("devices"):
            env["CUDA_VISIBLE_DEVICES"] = run.info["devices"]
        # its own session and process group: Stop signals the group; the run outlives this server
        proc = subprocess.Popen([sys.executable, "-m", "tuneforge.webui.child", str(run.path.resolve())],
                                cwd=run.info.get("cwd") or None, env=env, start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs[run.path] = proc
        stat = _proc_stat(proc.pid)
        info = {**run.info, "pid": proc.pid, "pgid": proc.pid, "started": time.time(),
                "proc_start": stat[1] if stat else None, "stops": 0}
        write_atomic(run.path / RUN_FILE, json.dumps(info, ensure_ascii=False, indent=1))

    def stop(self, path: str | Path) -> str:
        """First call: SIGTERM to the run's group (graceful stop); later calls: SIGKILL. A queued run is
        cancelled. Returns the run's status afterwards."""
        with self.lock:
            run = read_run(Path(path))
            if run.status == "queued":
                write_atomic(run.path / EXIT_FILE, json.dumps({"cancelled": True, "ended": time.time()}))
                return "cancelled"
            if run.status not in ("running", "stopping"):
                return run.status
            stops = int(run.info.get("stops") or 0)
            try:
                os.killpg(run.info["pgid"], signal.SIGKILL if stops else signal.SIGTERM)
            except ProcessLookupError:
                pass
            write_atomic(run.path / RUN_FILE, json.dumps({**run.info, "stops": stops + 1}, ensure_ascii=False,
                                                         indent=1))
            return "stopping" if not stops else "killed"

    def resume(self, path: str | Path) -> Run:
        """Queue a stopped (or killed) run again from its latest checkpoint (`resume_from_checkpoint=true`)."""
        with self.lock:
            run = read_run(Path(path))
            if run.status in ACTIVE or not run.info:
                raise ConfigError(f"'{run.path}' is {run.status}; only a stopped run started here can resume")
            command = [*train_command(run.path / CONFIG_FILE), "resume_from_checkpoint=true"]
            info = {**run.info, "command": command, "created": time.time(), "pid": None, "stops": 0}
            (run.path / EXIT_FILE).unlink(missing_ok=True)
            write_atomic(run.path / RUN_FILE, json.dumps(info, ensure_ascii=False, indent=1))
            self.tick()
            return read_run(run.path)
