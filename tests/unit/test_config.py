import copy

import pytest
import yaml

from cft.config import ConfigError, load_params, parse_params


@pytest.fixture(scope="module")
def shipped(repo_root):
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def test_shipped_params_validate(repo_root):
    params = load_params(repo_root / "params.yaml")
    assert params.train.mode == "cft"
    assert params.validate_.min_pass_rate == 0.9
    assert params.baselines == {"base": "models/tiny"}


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda p: p["train"].update(learnign_rate=1e-5), "train.learnign_rate: unknown key"),
        (lambda p: p["train"]["sft"].update(learning_rate="fast"), "train.sft.learning_rate"),
        (lambda p: p["train"].update(global_batch_size=-1), "train.global_batch_size"),
        (lambda p: p["validate"].update(min_pass_rate=1.5), "validate.min_pass_rate"),
        (lambda p: p["respond"]["models"].append({"name_or_path": "m", "sampling": {"top_p": 0}}), "respond.models.1.sampling.top_p"),
        (lambda p: p.update(trian={}), "trian: unknown key"),
        (lambda p: p["tiny_model"].update(hidden_size=130), "divisible by num_heads"),
        (lambda p: p.update(baselines=["models/tiny"]), "baselines: Input should be a valid dictionary"),
        (lambda p: p["baselines"].update(other=3), "baselines.other: Input should be a valid string"),
        (lambda p: p["evaluate"].update(baselines={}), "`baselines` moved out of `evaluate` to the top level"),
    ],
)
def test_bad_value_names_the_key(shipped, edit, expected):
    data = copy.deepcopy(shipped)
    edit(data)
    with pytest.raises(ConfigError) as info:
        parse_params(data, "params.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("params.yaml:")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
