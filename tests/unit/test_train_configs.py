"""Every shipped recipe validates as TrainConfig; every accelerate config is launchable."""

import json

import pytest
import yaml

from cft.train.config import TrainConfig


def _recipes(repo_root):
    return sorted((repo_root / "configs" / "recipes").rglob("*.yaml"))


def _accelerate_configs(repo_root):
    return sorted((repo_root / "configs" / "accelerate").rglob("*.yaml"))


def test_recipes_exist(repo_root):
    assert len(_recipes(repo_root)) > 0
    assert (repo_root / "configs/recipes/paper_qwen25_math_7b.yaml").exists()


def test_every_recipe_validates(repo_root):
    for path in _recipes(repo_root):
        data = yaml.safe_load(path.read_text())
        cfg = TrainConfig.model_validate(data["train"])
        assert (repo_root / cfg.accelerate_config).exists(), f"{path}: {cfg.accelerate_config} missing"


def test_paper_recipe_values(repo_root):
    cfg = TrainConfig.model_validate(yaml.safe_load((repo_root / "configs/recipes/paper_qwen25_math_7b.yaml").read_text())["train"])
    assert cfg.base_model == "Qwen/Qwen2.5-Math-7B" and cfg.lora is None
    sft = cfg.sft_value
    assert (sft("bf16"), sft("max_length"), sft("learning_rate"), sft("lr_scheduler_type")) == (True, 2048, 5e-6, "cosine")
    assert (sft("warmup_steps"), sft("num_train_epochs"), cfg.global_batch_size, sft("save_steps")) == (0.1, 1, 512, 20)
    assert "deepspeed_zero3" in cfg.accelerate_config and cfg.best_checkpoint.benchmark == "math-500"
    assert cfg.accumulation_steps(8) * sft("per_device_train_batch_size") * 8 == 512


def test_recipes_only_use_trl_settings_trl_accepts(repo_root):
    """Each recipe's `sft:` builds a real SFTConfig (TRL validates its own settings)."""
    import dataclasses

    from trl import SFTConfig

    for path in _recipes(repo_root):
        cfg = TrainConfig.model_validate(yaml.safe_load(path.read_text())["train"])
        kwargs = {**cfg.sft.as_kwargs(), "output_dir": "unused", "bf16": False, "use_cpu": True}
        kwargs.pop("model_init_kwargs", None)  # attn_implementation=flash_attention_2 needs a GPU to load, not to validate
        fields = {f.name for f in dataclasses.fields(SFTConfig)}
        assert set(kwargs) <= fields, path.name
        SFTConfig(**kwargs)


def test_every_accelerate_config_parses(repo_root):
    from accelerate.commands.config.config_args import load_config_from_file

    paths = _accelerate_configs(repo_root)
    assert len(paths) >= 6
    for path in paths:
        data = yaml.safe_load(path.read_text())
        for key in ("compute_environment", "distributed_type", "num_processes", "num_machines", "machine_rank"):
            assert key in data, f"{path.name}: missing {key}"
        loaded = load_config_from_file(str(path))  # accelerate's own parser
        assert loaded.num_processes == data["num_processes"]
        ds = (data.get("deepspeed_config") or {}).get("deepspeed_config_file")
        if ds:
            assert json.loads((repo_root / ds).read_text())["zero_optimization"]["stage"] == 3


def test_cpu_config_is_one_cpu_process(repo_root):
    data = yaml.safe_load((repo_root / "configs/accelerate/cpu.yaml").read_text())
    assert data["use_cpu"] is True and data["num_processes"] == 1 and data["distributed_type"] == "NO"


def test_fsdp_config_saves_full_state_dicts(repo_root):
    """transformers writes model weights under FSDP only from a full state dict."""
    data = yaml.safe_load((repo_root / "configs/accelerate/fsdp.yaml").read_text())
    assert data["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def test_unknown_key_rejected():
    with pytest.raises(ValueError, match="extra"):
        TrainConfig.model_validate({"learning_rat": 1e-3})
    with pytest.raises(ValueError, match="extra"):
        TrainConfig.model_validate({"sft": {"learning_rat": 1e-3}})


def test_fsdp_on_the_cpu_is_refused_not_silently_ddp(tmp_path):
    from cft.train.launch import launch_training

    (tmp_path / "fsdp_cpu.yaml").write_text("distributed_type: FSDP\nuse_cpu: true\nnum_processes: 2\n")
    cfg = TrainConfig(accelerate_config=str(tmp_path / "fsdp_cpu.yaml"))
    with pytest.raises(ValueError, match="FSDP with use_cpu"):
        launch_training(cfg, train_file="t", output_dir=tmp_path / "o", metrics_path="m", plot_path="p")



def test_sft_fields_are_read_safely_while_other_threads_run():
    """CPython 3.11 fails ASTs built on two threads at once (gh-106905): with another thread
    alive (a Prefect worker's), the sources are parsed in a child process instead."""
    import threading

    from cft.train import sft_fields as module

    alone = module._from_sources()
    done = threading.Event()
    other = threading.Thread(target=done.wait)
    other.start()
    try:
        module.sft_fields.cache_clear()
        assert module.sft_fields() == alone
    finally:
        done.set()
        other.join()
        module.sft_fields.cache_clear()


def test_a_failed_child_reading_sft_fields_shows_its_traceback(tmp_path, monkeypatch):
    """The child's stderr is part of the error, not swallowed with its output."""
    import threading

    from cft.train import sft_fields as module

    child = tmp_path / "python"
    child.write_text("#!/bin/sh\necho 'Traceback: ImportError: no module named trl' >&2\nexit 1\n")
    child.chmod(0o755)
    monkeypatch.setattr(module.sys, "executable", str(child))
    done = threading.Event()
    other = threading.Thread(target=done.wait)
    other.start()
    try:
        module.sft_fields.cache_clear()
        with pytest.raises(RuntimeError, match="(?s)exit code 1.*ImportError: no module named trl"):
            module.sft_fields()
    finally:
        done.set()
        other.join()
        module.sft_fields.cache_clear()
