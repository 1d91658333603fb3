from pathlib import Path

import pytest

from arginator.config import RunConfig, load_config, parse_override
from arginator.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_valid_and_yaml_files_match_them():
    files = [CONFIGS / "model.yaml", CONFIGS / "train.yaml"]
    assert load_config(files) == RunConfig()


def test_overrides_are_typed_from_yaml():
    config = load_config(overrides=["train.max_epochs=7", "model.hidden_sizes=[128, 64]", "data.negative=non"])
    assert config.train.max_epochs == 7
    assert config.model.hidden_sizes == [128, 64]
    assert config.data.negative == ["non"]


def test_file_then_override_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  max_epochs: 3\n  batch_size: 16\n")
    config = load_config([path], ["train.max_epochs=9"])
    assert (config.train.max_epochs, config.train.batch_size) == (9, 16)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key 'train.max_epoch'"):
        load_config(overrides=["train.max_epoch=3"])


def test_unknown_key_in_file_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  hiden_sizes: [3]\n")
    with pytest.raises(ConfigError, match=r"c.yaml.*unknown key 'model.hiden_sizes'"):
        load_config([path])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"'train.max_epochs'.*'abc'"):
        load_config(overrides=["train.max_epochs=abc"])


def test_invalid_choice_is_named():
    with pytest.raises(ConfigError, match=r"'data.task'"):
        load_config(overrides=["data.task=regression"])


def test_pattern_needs_label_placeholder():
    with pytest.raises(ConfigError, match=r"'data.file_pattern'.*\{label\}"):
        load_config(overrides=["data.file_pattern=*.h5"])


@pytest.mark.parametrize("override", ["no_equals_sign", "=5"])
def test_malformed_override(override):
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_override(override)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config([tmp_path / "nope.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config([bad])
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config([scalar])


def test_negative_and_positive_must_not_overlap():
    with pytest.raises(ConfigError, match="share labels"):
        load_config(overrides=["data.negative=non", "data.positive=[non, a]"])
