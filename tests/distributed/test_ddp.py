"""Data parallel on the CPU: `tuneforge train` started as two ranks (FORCE_TORCHRUN, two "nodes" over loopback, Ray)
trains exactly what one process trains at the same global batch, and says and writes everything once."""

from __future__ import annotations

import pytest

from conftest import write_yaml
from distributed.helpers import (BASE, check, config, free_port, losses, need, one_process, run, side_by_side, start,
                                 steps, tuneforge)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, batch 4: the per-step losses two ranks of batch 2 must reproduce."""
    return one_process(tmp_path_factory.mktemp("one_process"))


def assert_same_training(out, reference, tol=1e-5):
    ours = steps(out)
    assert [r["current_steps"] for r in ours] == [1, 2, 3, 4]  # one line per step: rank 0 alone writes the log
    assert [r["loss"] for r in ours] == pytest.approx([r["loss"] for r in reference], abs=tol)
    assert [r["grad_norm"] for r in ours] == pytest.approx([r["grad_norm"] for r in reference], rel=1e-4)
    # the ranks split the data (4 steps x 4 samples of 80 = 0.2 epoch); two independent runs would show 0.1
    assert ours[-1]["epoch"] == pytest.approx(reference[-1]["epoch"]) == pytest.approx(0.2)


def test_force_torchrun_two_ranks_train_as_one_process(tmp_path, reference):
    """FORCE_TORCHRUN=1 NPROC_PER_NODE=2 tuneforge train: the loss is not doubled, the ranks cooperate, each note
    and the summary come once, one set of output files (in a Chinese-named folder, from a Chinese-named config)."""
    path, out = config(tmp_path, name="训练.yaml", out="输出")
    result, seconds = run(tuneforge("train", str(path)), FORCE_TORCHRUN="1", NPROC_PER_NODE="2")
    check(result)
    side_by_side("force_torchrun", losses(out), [r["loss"] for r in reference], seconds)
    assert_same_training(out, reference)
    stderr = result.stderr
    assert stderr.count("tuneforge: torchrun: 2 processes on each of 1 node(s)") == 1
    assert stderr.count("tuneforge: done in") == 1 and stderr.count("tuneforge: data: 80 training samples") == 1
    assert "Traceback" not in stderr and "find_unused_parameters=True" not in stderr
    assert (out / "adapter_model.safetensors").is_file() and (out / "training_loss.png").is_file()


def test_two_nodes_over_loopback_write_one_output(tmp_path, reference):
    """NNODES=2 with NODE_RANK 0 and 1 meeting at MASTER_ADDR:MASTER_PORT (LLaMA-Factory's variables), one process
    per node: one run, one output folder, the same losses as one process."""
    path, out = config(tmp_path)
    common = dict(NNODES="2", NPROC_PER_NODE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    import time

    started = time.time()
    nodes = [start(tuneforge("train", str(path)), NODE_RANK=str(rank), **common) for rank in (0, 1)]
    results = [node.communicate(timeout=600) for node in nodes]
    seconds = time.time() - started
    for node, (_, stderr) in zip(nodes, results):
        assert node.returncode == 0, stderr[-4000:]
    side_by_side("two_nodes", losses(out), [r["loss"] for r in reference], seconds)
    assert_same_training(out, reference)
    assert "tuneforge: done in" in results[0][1] and "tuneforge: done in" not in results[1][1]  # rank 0 speaks


def test_a_failing_rank_is_one_line_naming_it(tmp_path):
    """A rank that fails (here every rank's checkpoint save hits a full disk) ends the run with the rank's own
    one-line error and its exit code, not torchrun's report."""
    path, out = config(tmp_path, save_strategy="steps", save_steps=2)
    result, _ = run(tuneforge("train", str(path)), FORCE_TORCHRUN="1", NPROC_PER_NODE="2",
                    TUNEFORGE_TEST_SAVE_FAIL="ENOSPC")
    assert result.returncode == 2, result.stderr[-4000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert errors and all(line.startswith("error: rank ") and "no space left on device" in line for line in errors)
    assert "Traceback" not in result.stderr and "ChildFailedError" not in result.stderr


def test_ray_two_workers_train_as_one_process(tmp_path, reference):
    """USE_RAY=1 with ray_num_workers: 2 on a local Ray cluster: Ray Train's TorchTrainer runs the same training."""
    need("ray.train")
    path, out = config(tmp_path, ray_num_workers=2, ray_storage_path=str(tmp_path / "ray"),
                       ray_init_kwargs={"num_cpus": 2, "include_dashboard": False})
    result, seconds = run(tuneforge("train", str(path)), USE_RAY="1", RAY_DISABLE_DOCKER_CPU_WARNING="1")
    check(result)
    side_by_side("ray", losses(out), [r["loss"] for r in reference], seconds)
    assert_same_training(out, reference)
    assert result.stderr.count("done in") == 1  # rank 0's summary only


def test_bad_launch_variables_are_one_line(tmp_path):
    from conftest import assert_one_error_line

    path = write_yaml(tmp_path / "train.yaml", **{**BASE, "output_dir": str(tmp_path / "out")})
    result, _ = run(tuneforge("train", str(path)), NNODES="2", NODE_RANK="2")
    assert_one_error_line(result, "NODE_RANK is 2 but NNODES is 2")


def test_sigterm_to_the_launcher_saves_one_checkpoint_and_exits_75(tmp_path):
    """The web UI's Stop (SIGTERM to `tuneforge train`, the process that started torchrun) reaches every rank; they
    agree on the step, save it once and the run exits 75 with one line saying how to resume."""
    import signal
    import time

    path, out = config(tmp_path, max_steps=30)
    process = start(tuneforge("train", str(path)), FORCE_TORCHRUN="1", NPROC_PER_NODE="2",
                    TUNEFORGE_TEST_STEP_DELAY="0.5")
    log = out / "trainer_log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.is_file() and log.read_text(encoding="utf-8").strip()):
        time.sleep(0.5)  # until the first step is logged: training is under way on both ranks
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 75, stderr[-4000:]
    saved = [p for p in out.iterdir() if p.name.startswith("checkpoint-")]
    assert len(saved) == 1 and (saved[0] / "tuneforge_complete.json").is_file()
    assert stderr.count("SIGTERM received") == 1 and stderr.count("resume with: tuneforge train") == 1
    assert "Traceback" not in stderr
