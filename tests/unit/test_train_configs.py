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
    assert (cfg.precision, cfg.max_length, cfg.learning_rate, cfg.lr_scheduler) == ("bf16", 2048, 5e-6, "cosine")
    assert (cfg.warmup_ratio, cfg.epochs, cfg.global_batch_size, cfg.save_steps) == (0.1, 1, 512, 20)
    assert "deepspeed_zero3" in cfg.accelerate_config
    assert cfg.accumulation_steps(8) * cfg.per_device_batch_size * 8 == 512


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


def test_unknown_key_rejected():
    with pytest.raises(ValueError, match="extra"):
        TrainConfig.model_validate({"learning_rat": 1e-3})
