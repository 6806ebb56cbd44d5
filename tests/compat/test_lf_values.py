"""Values and switches LLaMA-Factory users paste from its web UI and docs: understood, or answered in one line."""

from __future__ import annotations

import logging
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import assert_one_error_line, run_cli
from tuneforge.config.errors import ConfigError
from tuneforge.config.load import load

BASE = {"model_name_or_path": "tuneforge/tiny", "template": "qwen3_nothink", "dataset": "identity",
        "do_train": True, "output_dir": "unused"}


@pytest.mark.parametrize("keys, section, expected", [
    ({"flash_attn": "flashattn2"}, "model", {"flash_attn": "fa2"}),
    ({"booster": "flashattn2"}, "model", {"flash_attn": "fa2"}),
    ({"booster": "liger_kernel"}, "model", {"enable_liger_kernel": True}),
    ({"booster": "unsloth"}, "model", {"use_unsloth": True}),
    ({"booster": "auto"}, "model", {"flash_attn": "auto", "use_unsloth": False}),
    ({"pure_bf16": True}, "train", {"pure_bf16": True, "bf16": False}),
], ids=["flashattn2", "booster-fa2", "booster-liger", "booster-unsloth", "booster-auto", "pure_bf16"])
def test_llamaboard_values_are_understood(keys, section, expected):
    cfg, _ = load(base={**BASE, **keys})
    assert {k: getattr(getattr(cfg, section), k) for k in expected} == expected


def test_mistaken_values_are_one_line():
    with pytest.raises(ConfigError, match="'booster' must be auto, flashattn2, unsloth, liger_kernel, got 'turbo'"):
        load(base={**BASE, "booster": "turbo"})
    with pytest.raises(ConfigError, match="bf16 and pure_bf16 are on together; choose one"):
        load(base={**BASE, "bf16": True, "pure_bf16": True})
    with pytest.raises(ConfigError, match="'swanlab_project'.*set SWANLAB_PROJECT in the environment"):
        load(base={**BASE, "swanlab_project": "p"})


def test_use_swanlab_reports_to_swanlab_where_installed():
    import importlib.util

    if importlib.util.find_spec("swanlab") is None:
        with pytest.raises(ConfigError, match="'report_to' 'swanlab' needs the swanlab package; `pip install swanlab`"):
            load(base={**BASE, "use_swanlab": True, "report_to": "tensorboard"})
    else:
        cfg, _ = load(base={**BASE, "use_swanlab": True})
        assert cfg.train.report_to == "swanlab"


def test_pure_bf16_on_a_cpu_computes_in_fp32_and_says_so():
    from tuneforge.model.load import choose_precision

    cfg, _ = load(base={**BASE, "pure_bf16": True, "use_cpu": True})
    precision = choose_precision(cfg.train, "full")
    assert (str(precision.load_dtype), precision.bf16) == ("torch.float32", False)
    assert precision.note.startswith("no GPU: pure_bf16 is off, computing in fp32")


def test_use_unsloth_says_it_is_not_used(tmp_path, caplog):
    from tuneforge.cli.train import setup

    cfg, _ = load(base={**BASE, "use_unsloth": True, "output_dir": str(tmp_path / "out")})
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        setup(cfg)
    assert [r.message for r in caplog.records if "unsloth" in r.message] == [
        "use_unsloth: unsloth is not used; tuneforge's own fast path (padding-free, fused loss) is on"]


# -- RoPE scaling -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["linear", "dynamic", "yarn", "llama3"])
def test_rope_scaling_sets_the_models_rope_parameters_from_cutoff_len(kind, caplog):
    """The tiny model has 4096 positions: cutoff_len 10000 scales by ceil(10000 / 4096) = 3, as LLaMA-Factory does."""
    import torch

    from tuneforge.model.load import inference_precision, load_model

    cfg, _ = load(base={**BASE, "cutoff_len": 10000, "rope_scaling": kind})
    assert cfg.model.model_max_length == 10000
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        model = load_model(cfg.model, inference_precision(cfg.model, "cpu"), attn_implementation=None)
    params = model.config.rope_parameters
    assert (params["rope_type"], params["factor"], model.config.max_position_embeddings) == (kind, 3.0, 10000)
    assert f"rope_scaling: {kind}, factor 3 (positions 4096 -> 10000)" in caplog.text
    if kind != "linear":
        assert params["original_max_position_embeddings"] == 4096
    if kind == "llama3":
        assert (params["low_freq_factor"], params["high_freq_factor"]) == (1.0, 4.0)
    rotary = model.model.rotary_emb
    assert rotary.rope_type == kind
    head = model.config.hidden_size // model.config.num_attention_heads
    plain = 1.0 / (params["rope_theta"] ** (torch.arange(0, head, 2, dtype=torch.float) / head))
    if kind == "linear":  # positions stretched: every frequency divided by the factor
        assert torch.allclose(rotary.inv_freq, plain / 3)
    if kind == "yarn":
        assert rotary.attention_scaling > 1


def test_rope_scaling_is_off_when_the_length_fits_and_two_without_a_length(caplog):
    from tuneforge.model.load import load_model_config

    cfg, _ = load(base={**BASE, "cutoff_len": 1024, "rope_scaling": "linear"})
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        config = load_model_config(cfg.model, say=True)
    assert config.rope_parameters["rope_type"] == "default" and config.max_position_embeddings == 4096
    assert "rope_scaling: linear is off: model_max_length/cutoff_len 1024 fits the model's 4096 positions" in caplog.text
    chat, _ = load(base={**BASE, "do_train": False, "rope_scaling": "dynamic"})  # no length: LLaMA-Factory's 2.0
    assert load_model_config(chat.model).rope_parameters["factor"] == 2.0


# -- where models come from -----------------------------------------------------------------------------------------

def test_use_modelscope_hub_downloads_hub_ids_with_modelscope(tiny_path, monkeypatch, caplog):
    from tuneforge.config.schema import ModelConfig
    from tuneforge.model import hub
    from tuneforge.model.load import load_model_config

    asked = []
    fake = types.ModuleType("modelscope")
    fake.snapshot_download = lambda name, revision=None, cache_dir=None: asked.append(name) or str(tiny_path)
    monkeypatch.setitem(sys.modules, "modelscope", fake)
    monkeypatch.setenv("USE_MODELSCOPE_HUB", "1")
    hub.modelscope_folder.cache_clear()
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        config = load_model_config(ModelConfig(model_name_or_path="Qwen/Qwen2.5-0.5B-Instruct"))
    assert asked == ["Qwen/Qwen2.5-0.5B-Instruct"] and config.model_type == "qwen2"
    assert f"model 'Qwen/Qwen2.5-0.5B-Instruct' from ModelScope: {tiny_path}" in caplog.text
    monkeypatch.setitem(sys.modules, "modelscope", None)  # not installed
    hub.modelscope_folder.cache_clear()
    with pytest.raises(ConfigError, match="USE_MODELSCOPE_HUB=1 needs modelscope: pip install modelscope"):
        load_model_config(ModelConfig(model_name_or_path="Qwen/Qwen2.5-0.5B-Instruct"))
    hub.modelscope_folder.cache_clear()


@pytest.mark.parametrize("value", ["1", "TRUE", "yes", "on"])
def test_a_modelscope_dataset_follows_the_same_switch_as_models(monkeypatch, value):
    """A dataset registered only with ms_hub_url loads through ModelScope's MsDataset when USE_MODELSCOPE_HUB is
    on, by the same rule as a model ("TRUE" and "yes" count as on), and says how to turn it on when it is off."""
    import types

    from tuneforge.config.errors import DataError
    from tuneforge.data.readers import hub_dataset
    from tuneforge.data.registry import DatasetSpec

    rows = [{"instruction": "你好", "output": "hi"}]
    asked = []

    class MsDataset:
        @staticmethod
        def load(path, subset_name=None, split=None, cache_dir=None):
            asked.append((path, split))
            return rows

    fake = types.ModuleType("modelscope")
    fake.MsDataset = MsDataset
    monkeypatch.setitem(sys.modules, "modelscope", fake)
    spec = DatasetSpec("ms_demo", "ms_hub", "AI-ModelScope/alpaca-gpt4-data-zh")
    monkeypatch.delenv("USE_MODELSCOPE_HUB", raising=False)
    with pytest.raises(DataError, match="'ms_demo' is only on ModelScope; set USE_MODELSCOPE_HUB=1"):
        hub_dataset(spec)
    monkeypatch.setenv("USE_MODELSCOPE_HUB", value)
    assert list(hub_dataset(spec)) == rows and asked == [("AI-ModelScope/alpaca-gpt4-data-zh", spec.split)]


class _NotFound(BaseHTTPRequestHandler):
    """A mirror that knows no model: answers every request 404 and remembers the paths."""

    paths: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        _NotFound.paths.append(self.path)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def test_hf_endpoint_is_where_models_are_fetched(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        import os
        import subprocess

        env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        result = subprocess.run([sys.executable, "-m", "tuneforge", "chat", "--model_name_or_path", "someorg/model",
                                 "--template", "qwen"], env=env, capture_output=True, text=True, timeout=300,
                                stdin=subprocess.DEVNULL)
    finally:
        server.shutdown()
    line = assert_one_error_line(result, "someorg/model", alone=False)
    assert endpoint in line
    assert any("someorg/model" in path for path in _NotFound.paths), _NotFound.paths


def test_hub_tokens_and_no_op_keys_are_answered(monkeypatch):
    """hf_hub_token is used (as HF_TOKEN) and never stored; keys with nothing to do say so; others are refused."""
    import os

    monkeypatch.setenv("HF_TOKEN", "put back after the test")  # so that monkeypatch removes what load() sets
    monkeypatch.delenv("HF_TOKEN")
    cfg, notes = load(base={**BASE, "hf_hub_token": "hf_secret", "low_cpu_mem_usage": True,
                            "print_param_status": True})
    assert os.environ["HF_TOKEN"] == "hf_secret" and "hf_secret" not in str(cfg.flat())
    assert notes == ["'low_cpu_mem_usage' has no effect: transformers 5 always loads weights without a second copy "
                     "in memory",
                     "'print_param_status' has no effect: tuneforge prints the trainable and total parameter counts"]
    with pytest.raises(ConfigError, match="'ms_hub_token' is a LLaMA-Factory key.*modelscope login"):
        load(base={**BASE, "ms_hub_token": "x"})


def test_rope_scaling_reaches_reward_models_too(tiny_path):
    import torch

    from tuneforge.config.schema import ModelConfig
    from tuneforge.model.reward import load_sequence_classifier

    m = ModelConfig(model_name_or_path=str(tiny_path), rope_scaling="linear", model_max_length=9000)
    model = load_sequence_classifier(str(tiny_path), m, torch.float32, attn_implementation=None)
    assert model.config.rope_parameters["factor"] == 3.0 and model.config.num_labels == 1
    assert model.score.out_features == 1
