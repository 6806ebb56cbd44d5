"""How `tuneforge train` decides to start several processes, and the one-line answers to mistakes in the
multi-process settings. Nothing here trains."""

from __future__ import annotations

import pytest

from conftest import assert_one_error_line, run_cli, write_yaml
from distributed.helpers import BASE
from tuneforge.config.errors import ConfigError
from tuneforge.launch import torchrun
from tuneforge.launch.torchrun import Outcome, plan


def test_plan_follows_llamafactorys_variables():
    assert plan({}, 1) is None and plan({}, 0) is None  # one GPU or none: train in this process
    several = plan({}, 4)  # every visible GPU (CUDA_VISIBLE_DEVICES decides what torch counts)
    assert (several.nnodes, several.node_rank, several.nproc_per_node, several.master_addr) == (1, 0, 4, "127.0.0.1")
    assert plan({"FORCE_TORCHRUN": "1"}, 0).nproc_per_node == 1
    assert plan({"FORCE_TORCHRUN": "true", "NPROC_PER_NODE": "2"}, 0).nproc_per_node == 2
    nodes = plan({"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29555",
                  "NPROC_PER_NODE": "8"}, 8)
    assert nodes.args() == ["--nnodes", "2", "--node_rank", "1", "--nproc_per_node", "8", "--master_addr", "10.0.0.1",
                            "--master_port", "29555"]
    assert plan({"NNODES": "2"}, 1).master_port == torchrun.DEFAULT_PORT  # nodes must agree on the port
    assert plan({"LOCAL_RANK": "0", "WORLD_SIZE": "2", "FORCE_TORCHRUN": "1"}, 4) is None  # already a rank


@pytest.mark.parametrize("env,needle", [({"NNODES": "two"}, "NNODES must be a whole number, got 'two'"),
                                        ({"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "0"}, "NPROC_PER_NODE must be at least 1"),
                                        ({"NNODES": "2", "NODE_RANK": "2"}, "NODE_RANK is 2 but NNODES is 2")])
def test_bad_launch_variables(env, needle):
    with pytest.raises(ConfigError, match=needle):
        plan(env, 0)


def test_several_gpus_start_torchrun_with_the_same_command(tmp_path, monkeypatch):
    """The launcher function is the seam: on a machine with 2 visible GPUs, `tuneforge train cfg k=v` hands torchrun
    `-m tuneforge train cfg k=v` with one process per GPU, and trains nothing itself."""
    from tuneforge.cli.train import run_train

    seen: list[list[str]] = []
    monkeypatch.setattr(torchrun, "visible_gpus", lambda: 2)
    monkeypatch.setattr(torchrun, "run_torchrun", lambda args: seen.append(args) or Outcome(0))
    for name in ("LOCAL_RANK", "WORLD_SIZE", "USE_RAY", "FORCE_TORCHRUN", "NNODES", "NPROC_PER_NODE"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "out"
    path = write_yaml(tmp_path / "train.yaml", **{**BASE, "output_dir": str(out)})
    run_train(path, ["learning_rate=1e-4"])
    assert len(seen) == 1
    args = seen[0]
    assert args[args.index("--nproc_per_node") + 1] == "2" and args[args.index("--nnodes") + 1] == "1"
    assert args[args.index("-m"):] == ["-m", "tuneforge", "train", str(path), "learning_rate=1e-4"]
    assert not out.exists()


def test_failed_ranks_become_one_outcome():
    class Failure:
        def __init__(self, code):
            self.exitcode = code

    assert torchrun.failed({1: Failure(2), 0: Failure(-15)}) == Outcome(2)  # rank 0 was stopped because 1 failed
    assert torchrun.failed({0: Failure(-15)}) == Outcome(143, "rank 0 was killed by SIGTERM")
    assert torchrun.failed({1: Failure(2)}) == Outcome(2)  # the rank printed its own error line
    assert torchrun.failed({3: Failure(75)}) == Outcome(75)  # stopped: the rank said how to resume
    assert torchrun.failed({1: Failure(-9)}) == Outcome(137, "rank 1 was killed by SIGKILL (out of memory?)")
    assert torchrun.failed({0: Failure(1)}).message == "rank 0 failed with exit code 1 (its output is above)"


def test_a_ray_worker_error_names_its_rank():
    from tuneforge.launch.ray import worker_failure

    class Failed(Exception):
        def __init__(self, failures):
            self.worker_failures = failures

    assert worker_failure(Failed({1: ConfigError("bad key"), 0: ConfigError("bad key")})) == Outcome(2, "rank 0: bad key")
    assert worker_failure(Failed({1: RuntimeError("boom")})) == Outcome(1, "rank 1: RuntimeError: boom")


def _load(**keys):
    from tuneforge.config.load import load

    return load(base={**BASE, "output_dir": "out", **keys})


def test_bad_deepspeed_and_fsdp_settings_are_one_line_each(tmp_path, monkeypatch):
    import importlib.util

    broken = tmp_path / "ds.json"
    broken.write_text('{"zero_optimization": {"stage": 3},}', encoding="utf-8")
    with pytest.raises(ConfigError, match="'deepspeed' and 'fsdp' are both set"):
        _load(deepspeed={"zero_optimization": {"stage": 2}}, fsdp="full_shard")
    with pytest.raises(ConfigError, match=r"ds\.json: not valid JSON at line 1"):
        _load(deepspeed=str(broken))
    with pytest.raises(ConfigError, match="zero_optimization.stage must be 0, 1, 2 or 3, got 4"):
        _load(deepspeed={"zero_optimization": {"stage": 4}})
    with pytest.raises(ConfigError, match="'fsdp_config': file nowhere.json does not exist"):
        _load(fsdp="full_shard", fsdp_config="nowhere.json")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs the deepspeed package: pip install 'tuneforge\[deepspeed\]'"):
        _load(deepspeed={"zero_optimization": {"stage": 2}})
    cfg, _ = _load(do_train=False, deepspeed="nowhere.json")  # chat/export reuse training YAMLs: not checked there
    assert cfg.dist.deepspeed == "nowhere.json"


def test_a_zero_config_that_does_not_exist_is_one_line_through_the_cli(tmp_path):
    path = write_yaml(tmp_path / "train.yaml", **{**BASE, "output_dir": str(tmp_path / "out"),
                                                   "deepspeed": "examples/deepspeed/ds_z9_config.json"})
    assert_one_error_line(run_cli("train", str(path), cwd=tmp_path), "'deepspeed': file examples/deepspeed/ds_z9",
                          "does not exist", "ds_z3_config.json")


def test_use_ray_without_ray_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    from tuneforge.launch.entry import launch_elsewhere

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("ray") else real(name, *a))
    for name in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("USE_RAY", "1")
    cfg, _ = _load()
    with pytest.raises(ConfigError, match=r"USE_RAY=1 needs Ray Train: pip install 'tuneforge\[ray\]'"):
        launch_elsewhere(cfg, ["train"], print)


def test_fsdp_on_a_cpu_says_it_is_plain_data_parallel(tmp_path):
    from tuneforge.launch.entry import engine_notes

    cfg, _ = _load(fsdp="full_shard auto_wrap", fsdp_config={"version": 2})
    assert any("plain data parallel" in text for text in engine_notes(cfg, "cpu"))
    assert engine_notes(cfg, "cuda") == []


def test_shipped_zero_configs_work_from_any_folder(tmp_path, monkeypatch):
    """examples/deepspeed/ holds LLaMA-Factory's file names; the package ships the same files, so a config's
    `deepspeed: examples/deepspeed/ds_z3_config.json` works outside a checkout too (with a note)."""
    from pathlib import Path

    from tuneforge.config.distributed import PRESETS, zero_stage
    from tuneforge.launch.entry import engine_notes

    examples = Path(__file__).resolve().parents[2] / "examples" / "deepspeed"
    names = sorted(p.name for p in examples.glob("*.json"))
    assert names == ["ds_z0_config.json", "ds_z2_config.json", "ds_z2_offload_config.json", "ds_z3_config.json",
                     "ds_z3_offload_config.json"]
    for name in names:
        assert (PRESETS / name).read_bytes() == (examples / name).read_bytes(), name
    monkeypatch.chdir(tmp_path)
    cfg, _ = _load(deepspeed="examples/deepspeed/ds_z2_offload_config.json")
    assert Path(cfg.dist.deepspeed) == PRESETS / "ds_z2_offload_config.json" and zero_stage(cfg.dist) == 2
    assert "tuneforge's own copy" in engine_notes(cfg, "cpu")[0]
