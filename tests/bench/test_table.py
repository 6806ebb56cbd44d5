"""CPU tests for the GPU comparison harness: table.py's parsing and ratios, tokens.py's counting
plumbing, and device.sh's dry run (the exact command lines, without a GPU, wheels or .shared).

    .venv/bin/pytest tests/bench/test_table.py -q
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "bench"



def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


table = _load("table")

SAMPLE = """\
META entry main
META shape 1.5b (/tmp/bench/models/1.5b)
META device NVIDIA H100 80GB HBM3, 81559 MiB, 580.159.04
META reference lf_pack_liger
RUN lf_default lf - LLaMA-Factory default
RUN lf_pack_liger lf packing=true,enable_liger_kernel=true LLaMA-Factory packing+liger
RUN tf_default tf - tuneforge default
RUN tf_packing tf packing=true tuneforge packing
some unrelated log line
CMD tf_default tuneforge train .shared/bench/sft_lora.yaml model_name_or_path=/m
RESULT lf_pack_liger rc=0 wall_s=61.2 train_s=17.9 tokens=405580 tok_per_s=22657 peak_MiB=8577
ESTIMATE tf_default tuneforge: predicted peak 9.5 GiB (weights 2.9 GiB, activations 5.1 GiB)
RESULT tf_default rc=0 wall_s=80.0 train_s=40.0 tokens=405580 tok_per_s=10140 peak_MiB=12000
ESTIMATE tf_packing n/a
RESULT tf_packing rc=0 wall_s=50.0 train_s=16.0 tokens=405580 tok_per_s=25349 peak_MiB=6000
RESULT lf_default rc=1 wall_s=5.0 train_s=nan tokens=405580 tok_per_s=nan peak_MiB=500
NOTE lf_default OOM
"""


def test_parse_result_key_value_and_positional():
    kv = table.parse_result(["rc=0", "wall_s=61.2", "train_s=17.9", "tokens=405580", "tok_per_s=22657",
                             "peak_MiB=8577"])
    pos = table.parse_result(["0", "61.2", "17.9", "405580", "22657", "8577"])
    assert kv == pos == {"rc": 0, "wall_s": 61.2, "train_s": 17.9, "tokens": 405580, "tok_per_s": 22657,
                         "peak_MiB": 8577}


@pytest.mark.parametrize("text, mib", [
    ("tuneforge: predicted peak 9.5 GiB (weights 2.9 GiB)", 9.5 * 1024),
    ("predicted peak: 12,345 MiB", 12345),
    ("Predicted peak ~ 20 GB per GPU", 20e9 / 2**20),
    ("predicted peak 8000", 8000),          # no unit: MiB
    ("predicted peak 7.5G", 7.5 * 1024),
    ("predicted peak: unknown", None),
    ("n/a", None),
    (None, None),
    ("", None),
])
def test_parse_estimate(text, mib):
    got = table.parse_estimate(text)
    assert got == pytest.approx(mib) if mib is not None else got is None


# what `tuneforge estimate` prints (a rich table: one column per checkpointing setting, then the choice),
# as the driver passes it on: the "predicted peak" row, " ;; ", the "gradient checkpointing:" line
RICH_OFF = ("│ predicted peak │ 30.10 GiB │ 12.50 GiB │ ;; gradient checkpointing: off "
            "(predicted 30.1 GiB <= 80 GiB card)")
RICH_ON = "│ predicted peak │ 90.00 GiB │ 40.00 GiB │ ;; gradient checkpointing: on (predicted 40.0 GiB > card)"


@pytest.mark.parametrize("text, mib, ckpt", [
    (RICH_OFF, 30.10 * 1024, "off"),
    (RICH_ON, 40.0 * 1024, "on"),
    ("│ predicted peak │ 0.85 GiB │ 0.81 GiB │", 0.85 * 1024, None),   # no decision line: first column
    ("n/a ;; gradient checkpointing: on (set in the config; predicted 12.5 GiB, card 80 GiB)", 12.5 * 1024, "on"),
    ("n/a", None, None),
])
def test_estimate_columns_follow_the_checkpointing_choice(text, mib, ckpt):
    got, use = table.estimate_info(text)
    assert use == ckpt
    assert got == pytest.approx(mib) if mib is not None else got is None


def test_estimate_cell_names_the_checkpointing_choice():
    lines = SAMPLE.replace("ESTIMATE tf_packing n/a", f"ESTIMATE tf_packing {RICH_ON}").splitlines()
    md = table.markdown(table.parse(lines))
    row = next(line for line in md.splitlines() if line.startswith("| tuneforge packing |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[6:8] == ["40,960 (ckpt on)", "6.83"]


def test_rows_ratios_and_status():
    report = table.parse(SAMPLE.splitlines())
    assert list(report.rows) == ["lf_default", "lf_pack_liger", "tf_default", "tf_packing"]
    assert report.reference().name == "lf_pack_liger"
    tf = report.rows["tf_default"]
    assert tf.fw == "tf" and tf.ok and tf.estimate_mib == pytest.approx(9728)
    assert report.rows["tf_packing"].estimate_mib is None
    assert report.rows["lf_pack_liger"].overrides == "packing=true enable_liger_kernel=true"
    md = table.markdown(report)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    cells = [c.strip() for c in lines["tuneforge default"].strip("|").split("|")]
    # run, overrides, tok/s, peak, tok ratio, peak ratio, estimate, est/peak, train s, wall s, tokens, status
    assert cells[1:8] == ["(yaml as is)", "10,140", "12,000", "0.45", "1.40", "9,728", "0.81"]
    assert cells[-1] == "ok"
    ref = [c.strip() for c in lines["LLaMA-Factory packing+liger"].strip("|").split("|")]
    assert ref[4:6] == ["1.00 (ref)", "1.00 (ref)"] and ref[6:8] == ["", ""]
    pack = [c.strip() for c in lines["tuneforge packing"].strip("|").split("|")]
    assert pack[4:8] == ["1.12", "0.70", "n/a", "n/a"]
    failed = [c.strip() for c in lines["LLaMA-Factory default"].strip("|").split("|")]
    assert failed[2:6] == ["n/a", "n/a", "n/a", "n/a"] and failed[-1] == "rc=1; OOM"
    assert "NVIDIA H100" in md.splitlines()[0]


def test_cpu_peak_zero_is_na_and_skips_and_missing_reference():
    report = table.parse([
        "META entry sweep", "META extra max_samples=8",
        "RUN tf_pack_c1024 tf packing=true,cutoff_len=1024 tuneforge packing, cutoff 1024",
        "RUN tf_pack_c8192 tf packing=true,cutoff_len=8192 tuneforge packing, cutoff 8192",
        "RESULT tf_pack_c1024 rc=0 wall_s=20.0 train_s=5.0 tokens=1000 tok_per_s=200 peak_MiB=0",
        "SKIP tf_pack_c8192 time budget (530s of 560s used)",
    ])
    assert report.reference() is None
    md = table.markdown(report)
    row = next(line for line in md.splitlines() if line.startswith("| tuneforge packing, cutoff 1024"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:6] == ["200", "n/a", "n/a", "n/a"]
    assert "not run: time budget (530s of 560s used)" in md
    assert "extra overrides: `max_samples=8`" in md


def test_table_cli(tmp_path):
    results = tmp_path / "results.txt"
    results.write_text(SAMPLE)
    proc = subprocess.run([sys.executable, str(HERE / "table.py"), str(results)],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 0 and "| tuneforge packing |" in proc.stdout


# ---- tokens.py: override handling, max_samples = first N records, cache

def _fake_shared(root: Path) -> Path:
    (root / "bench").mkdir(parents=True)
    (root / "data" / "llamafactory").mkdir(parents=True)
    (root / "bench" / "sft_lora.yaml").write_text("dataset: alpaca_en_demo\ncutoff_len: 2048\nnum_train_epochs: 2.0\n")
    # stand-in for the shared counter: records x 10, capped by cutoff/100, to see what it was given
    (root / "bench" / "count_tokens.py").write_text(
        "import json, sys\nrecs = json.load(open(sys.argv[2]))\n"
        "print(sum(min(10, int(sys.argv[3]) // 100) for _ in recs))\n")
    data = root / "data" / "llamafactory"
    (data / "dataset_info.json").write_text(json.dumps({"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}}))
    (data / "alpaca_en_demo.json").write_text(json.dumps([{"instruction": str(i), "output": "x"} for i in range(50)]))
    return root


def _tokens(shared: Path, tmp: Path, *overrides: str) -> str:
    env = dict(os.environ, BENCH_TMP=str(tmp))
    proc = subprocess.run([sys.executable, str(HERE / "tokens.py"), str(shared), "/m", *overrides],
                          check=False, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_tokens_counts_with_overrides(tmp_path):
    shared = _fake_shared(tmp_path / "shared")
    scratch = tmp_path / "scratch"
    assert _tokens(shared, scratch) == "500 2"
    assert _tokens(shared, scratch, "max_samples=20", "num_train_epochs=1") == "200 1"
    assert _tokens(shared, scratch, "cutoff_len=500", "packing=true") == "250 2"
    assert json.loads((scratch / "cache" / "alpaca_en_demo.first20.json").read_text())[-1]["instruction"] == "19"
    assert len(json.loads((scratch / "cache" / "tokens.json").read_text())) == 3


# ---- device.sh dry run: the command lines each row would run

def _dry(entry: str, tmp_path: Path, **env_extra: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    env.update(BENCH_DRY="1", OUT=str(tmp_path / "out"), **env_extra)
    proc = subprocess.run(["bash", str(HERE / "device.sh"), entry],
                          check=False, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "out").exists(), "a dry run writes nothing"
    return proc.stdout.splitlines()


def _cmds(lines: list[str]) -> dict[str, list[str]]:
    return {line.split()[1]: shlex.split(line.split(" ", 2)[2]) for line in lines if line.startswith("CMD ")}


def _split(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """(the command up to the config file, {key: value} after it)."""
    at = next(i for i, a in enumerate(argv) if a.endswith("sft_lora.yaml"))
    return argv[: at + 1], dict(a.split("=", 1) for a in argv[at + 1:])


PLUMBING = {"model_name_or_path", "dataset_dir", "output_dir"}


def test_dry_main_default_rows_run_the_shared_yaml_unchanged(tmp_path):
    cmds = _cmds(_dry("main", tmp_path))
    assert set(cmds) == {"lf_default", "lf_pack_liger", "tf_default", "tf_packing"}
    head, keys = _split(cmds["tf_default"])
    assert head == ["tuneforge", "train", ".shared/bench/sft_lora.yaml"]
    assert set(keys) == PLUMBING  # only where the model, data and outputs are: our defaults otherwise
    lf_head, lf_keys = _split(cmds["lf_default"])
    assert lf_head[-4:] == ["-m", "llamafactory.cli", "train", ".shared/bench/sft_lora.yaml"]
    assert "PYTHONPATH=/tmp/lf-site" in lf_head
    assert lf_keys["model_name_or_path"] == keys["model_name_or_path"] == "/tmp/bench/models/1.5b"
    assert lf_keys["dataset_dir"] == keys["dataset_dir"] == ".shared/data/llamafactory"
    assert set(lf_keys) == PLUMBING
    _, pack = _split(cmds["tf_packing"])
    assert {k: v for k, v in pack.items() if k not in PLUMBING} == {"packing": "true"}
    _, liger = _split(cmds["lf_pack_liger"])
    assert {k: v for k, v in liger.items() if k not in PLUMBING} == {"packing": "true", "enable_liger_kernel": "true"}


def test_dry_sweep_and_7b_overrides(tmp_path):
    sweep = _cmds(_dry("sweep", tmp_path))
    for c in (1024, 2048, 4096, 8192):
        _, keys = _split(sweep[f"tf_pack_c{c}"])
        assert keys["cutoff_len"] == str(c) and keys["packing"] == "true"
        _, keys = _split(sweep[f"tf_default_c{c}"])
        assert keys["cutoff_len"] == str(c) and "packing" not in keys
    assert all(argv[0] == "tuneforge" for argv in sweep.values())
    big = _cmds(_dry("7b", tmp_path))
    assert set(big) == {"lf7b_default", "lf7b_pack_liger", "tf7b_default", "tf7b_packing"}
    for argv in big.values():  # both frameworks, same data: the shrink is on every row
        _, keys = _split(argv)
        assert keys["max_samples"] == "300" and keys["model_name_or_path"] == "/tmp/bench/models/7b"


def test_dry_filters_and_extra(tmp_path):
    lines = _dry("main", tmp_path, BENCH_FRAMEWORKS="tf", BENCH_EXTRA="max_samples=8 num_train_epochs=1")
    assert "SKIP lf_default BENCH_FRAMEWORKS=tf" in lines
    cmds = _cmds(lines)
    assert set(cmds) == {"tf_default", "tf_packing"}
    _, keys = _split(cmds["tf_default"])
    assert keys["max_samples"] == "8" and keys["num_train_epochs"] == "1"
    assert not any("lf-site" in line for line in lines if line.startswith("+"))


def test_device_usage_error():
    proc = subprocess.run(["bash", str(HERE / "device.sh"), "nonsense"], check=False, capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr
