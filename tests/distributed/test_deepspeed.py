"""DeepSpeed ZeRO through the HF Trainer on the CPU (use_cpu, gloo): two ranks train what one process trains at the
same global batch, ZeRO-3's final save is a whole from_pretrained folder, a ZeRO-3 checkpoint resumes exactly.
DeepSpeed's first use compiles a small extension (about a minute, once per machine: torch keeps it under
~/.cache/torch_extensions, or TORCH_EXTENSIONS_DIR)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from distributed.helpers import check, config, losses, need, one_process, run, side_by_side, steps, torchrun, tuneforge

need("deepspeed")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ZERO = {stage: str(REPO / "examples" / "deepspeed" / f"ds_{stage}_config.json")
        for stage in ("z0", "z2", "z2_offload", "z3", "z3_offload")}
FULL = dict(finetuning_type="full", learning_rate=1e-4)


@pytest.fixture(scope="module")
def reference_full(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one_process_full")
    return one_process(tmp, **FULL), tmp / "out"


@pytest.fixture(scope="module")
def reference_lora(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one_process_lora")
    return one_process(tmp), tmp / "out"


@pytest.fixture(scope="module")
def zero3_full(tmp_path_factory):
    """Full fine-tuning, ZeRO-3, two ranks by a plain `torchrun ... -m tuneforge train`, a checkpoint every 2 steps."""
    tmp = tmp_path_factory.mktemp("zero3_full")
    path, out = config(tmp, deepspeed=ZERO["z3"], save_strategy="steps", save_steps=2, **FULL)
    result, seconds = run(torchrun(2, "train", str(path)))
    check(result)
    return out, seconds


def same_weights(ours: Path, theirs: Path, name: str) -> None:
    """The saved tensors (whole, not ZeRO shards) equal the one-process run's."""
    from safetensors.torch import load_file

    a, b = load_file(ours / name), load_file(theirs / name)
    assert a.keys() == b.keys() and all(a[k].numel() == b[k].numel() > 0 for k in a)
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-4


def close(ours, reference, tol=1e-4):
    assert [r["loss"] for r in ours] == pytest.approx([r["loss"] for r in reference], abs=tol)


def test_zero3_full_two_ranks_and_the_saved_model_loads(zero3_full, reference_full):
    from transformers import AutoModelForCausalLM

    out, seconds = zero3_full
    reference, reference_out = reference_full
    side_by_side("zero3_full", losses(out), [r["loss"] for r in reference], seconds)
    close(steps(out), reference)
    model = AutoModelForCausalLM.from_pretrained(out)  # plain transformers: the ZeRO-3 shards were gathered
    same_weights(out, reference_out, "model.safetensors")
    assert model.num_parameters() > 0
    assert (out / "checkpoint-2" / "tuneforge_complete.json").is_file()


def test_resume_from_a_zero3_checkpoint_equals_the_uninterrupted_run(zero3_full, tmp_path):
    out, _ = zero3_full
    path, resumed = config(tmp_path, deepspeed=ZERO["z3"], save_strategy="steps", save_steps=2,
                           overwrite_output_dir=False, **FULL)
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-2", resumed / "checkpoint-2")
    result, seconds = run(torchrun(2, "train", str(path), "resume_from_checkpoint=true"))
    check(result)
    after = [r for r in steps(resumed) if r["current_steps"] > 2]
    uninterrupted = [r for r in steps(out) if r["current_steps"] > 2]
    side_by_side("zero3_resume", [r["loss"] for r in after], [r["loss"] for r in uninterrupted], seconds)
    assert [r["current_steps"] for r in after] == [3, 4]
    close(after, uninterrupted, tol=1e-5)


def test_zero2_lora_two_ranks_equal_one_process(tmp_path, reference_lora):
    path, out = config(tmp_path, deepspeed=ZERO["z2"])
    result, seconds = run(tuneforge("train", str(path)), FORCE_TORCHRUN="1", NPROC_PER_NODE="2")
    check(result)
    reference, reference_out = reference_lora
    side_by_side("zero2_lora", losses(out), [r["loss"] for r in reference], seconds)
    close(steps(out), reference)
    same_weights(out, reference_out, "adapter_model.safetensors")


def test_zero3_offload_lora_in_one_process_without_a_launcher(tmp_path, reference_lora):
    """`deepspeed:` in a plain `tuneforge train` (no torchrun): no MPI discovery, ZeRO-3 with CPU offload of
    parameters and optimizer, LoRA, the same losses as without DeepSpeed."""
    path, out = config(tmp_path, deepspeed=ZERO["z3_offload"], per_device_train_batch_size=4)
    result, seconds = run(tuneforge("train", str(path)))
    check(result)
    reference, reference_out = reference_lora
    side_by_side("zero3_offload_lora_1proc", losses(out), [r["loss"] for r in reference], seconds)
    close(steps(out), reference)
    same_weights(out, reference_out, "adapter_model.safetensors")
    assert "deepspeed ZeRO-3 shards lm_head's weight" in result.stderr
