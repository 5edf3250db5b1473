"""Configuration: the default validates; unknown keys, wrong types and bad cross-key settings are named."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from rmood.config import DEFAULT, ConfigError, check_config, load_config, lookup, override, validate_config


@pytest.fixture(scope="module")
def default() -> dict:
    return load_config()


@pytest.fixture
def config(default: dict) -> dict:
    return copy.deepcopy(default)


def test_default_config_validates(default: dict) -> None:
    assert default["experiment"] == "embedded"
    assert default["data"]["source"] == "synthetic"
    assert default["gold"]["source"] == "programmatic"
    with open(DEFAULT, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    assert lookup(default, "sft.epochs") == raw["sft"]["epochs"]


def schema_error(assignment: str) -> str:
    """The message of the schema error that `assignment` causes."""
    with pytest.raises(Exception) as err:
        load_config(assignments=[assignment])
    assert type(err.value).__name__ == "WorkflowError", repr(err.value)
    return str(err.value)


def test_unknown_top_level_key() -> None:
    assert "'bogus_key' was unexpected" in schema_error("bogus_key=1")


def test_unknown_nested_key() -> None:
    message = schema_error("sft.bogus_key=1")
    assert "'bogus_key' was unexpected" in message
    assert "['sft']" in message


def test_wrong_type_names_the_key() -> None:
    message = schema_error("rm.epochs=x")
    assert "'x' is not of type 'number'" in message
    assert "['rm']['epochs']" in message


def test_negative_size_fails() -> None:
    message = schema_error("data.sizes.sft=-1")
    assert "-1 is less than the minimum" in message
    assert "['data']['sizes']['sft']" in message


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(DEFAULT.read_text(encoding="utf-8").replace("experiment: embedded", "experiment: other"), encoding="utf-8")
    assert load_config(path)["experiment"] == "other"
    path.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


# --- overrides ----------------------------------------------------------------------------------


def test_override_parses_yaml_values(default: dict) -> None:
    config = override(default, ["sft.epochs=2", "model.source=/nope", "rm.learning_rate=3.0e-4", "data.root=null"])
    assert config["sft"]["epochs"] == 2 and isinstance(config["sft"]["epochs"], int)
    assert config["model"]["source"] == "/nope"
    assert config["rm"]["learning_rate"] == pytest.approx(3.0e-4)
    assert config["data"]["root"] is None
    assert default["sft"]["epochs"] != 2 and default["model"]["source"] == "tiny"  # the input is not modified


def test_override_keeps_text_after_the_first_equals(default: dict) -> None:
    assert override(default, ["experiment=a=b"])["experiment"] == "a=b"


def test_override_adds_a_new_top_level_key(default: dict) -> None:
    assert override(default, ["extra=[1, 2]"])["extra"] == [1, 2]


def test_override_rejects_missing_equals(default: dict) -> None:
    with pytest.raises(ConfigError, match="sft.epochs"):
        override(default, ["sft.epochs"])


def test_override_rejects_a_non_section_parent(default: dict) -> None:
    with pytest.raises(ConfigError, match=r"'seed' is not a section"):
        override(default, ["seed.value=1"])
    with pytest.raises(ConfigError, match=r"'nowhere' is not a section"):
        override(default, ["nowhere.value=1"])


def test_load_config_applies_overrides() -> None:
    config = load_config(assignments=["sft.epochs=1", "sampling.n=3"])
    assert config["sft"]["epochs"] == 1
    assert config["sampling"]["n"] == 3


# --- cross-key checks ---------------------------------------------------------------------------


def test_check_config_accepts_the_default(config: dict) -> None:
    check_config(config)  # no exception
    assert validate_config(config) is config


def test_ood_family_not_in_families(config: dict) -> None:
    config["data"]["synthetic"]["ood_families"] = ["repeat", "nonsense"]
    with pytest.raises(ConfigError, match=r"data\.synthetic\.ood_families.*nonsense"):
        check_config(config)


def test_too_few_training_families(config: dict) -> None:
    config["data"]["synthetic"]["families"] = ["reverse", "sort", "add"]
    config["data"]["synthetic"]["ood_families"] = ["sort", "add"]
    with pytest.raises(ConfigError, match=r"data\.synthetic\.ood_families"):
        check_config(config)


def test_min_items_larger_than_max_items(config: dict) -> None:
    config["data"]["synthetic"]["min_items"] = 8
    config["data"]["synthetic"]["max_items"] = 7
    with pytest.raises(ConfigError, match=r"data\.synthetic\.min_items"):
        check_config(config)
    config["data"]["synthetic"]["min_items"] = 7
    check_config(config)  # equal is fine


def test_alpacafarm_needs_data_root(config: dict) -> None:
    config["data"]["source"] = "alpacafarm"
    config["data"]["root"] = None
    with pytest.raises(ConfigError, match=r"data\.root"):
        check_config(config)


def test_programmatic_gold_needs_synthetic_data(config: dict) -> None:
    config["data"]["source"] = "alpacafarm"
    config["data"]["root"] = "data/alpacafarm"
    assert config["gold"]["source"] == "programmatic"
    with pytest.raises(ConfigError, match=r"gold\.source"):
        check_config(config)


def test_gold_model_directory_with_alpacafarm(config: dict, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    config["data"]["source"] = "alpacafarm"
    config["data"]["root"] = "data/alpacafarm"
    config["gold"]["source"] = str(tmp_path)
    check_config(config)  # a real model directory is accepted


def test_model_source_without_config_json(config: dict, tmp_path: Path) -> None:
    config["model"]["source"] = str(tmp_path)
    with pytest.raises(ConfigError, match=r"model\.source"):
        check_config(config)
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    check_config(config)


def test_model_source_missing_directory_via_load_config() -> None:
    with pytest.raises(ConfigError, match=r"model\.source.*/nope"):
        load_config(assignments=["model.source=/nope"])


def test_gold_source_without_config_json(config: dict, tmp_path: Path) -> None:
    config["gold"]["source"] = str(tmp_path)
    with pytest.raises(ConfigError, match=r"gold\.source"):
        check_config(config)


def test_override_reads_scientific_notation_as_a_number() -> None:
    config = override({"rm": {"learning_rate": 1.0}}, ["rm.learning_rate=1e-4", "rm.note=abc"])
    assert config["rm"]["learning_rate"] == pytest.approx(1e-4) and config["rm"]["note"] == "abc"
