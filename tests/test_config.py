"""Configuration: the default validates; unknown keys, wrong types and bad cross-key settings are named."""

from __future__ import annotations

import copy
import sys
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
    """The one-line message of the schema error that `assignment` causes."""
    with pytest.raises(ConfigError) as err:
        load_config(assignments=[assignment])
    assert "\n" not in str(err.value)
    return str(err.value)


def test_unknown_top_level_key() -> None:
    assert schema_error("bogus_key=1") == \
        "config key '(top level)': Additional properties are not allowed ('bogus_key' was unexpected)"


def test_unknown_nested_key() -> None:
    assert schema_error("sft.bogus_key=1") == \
        "config key 'sft': Unevaluated properties are not allowed ('bogus_key' was unexpected)"


def test_wrong_type_names_the_key() -> None:
    assert schema_error("rm.epochs=x") == "config key 'rm.epochs': 'x' is not of type 'number'"


def test_negative_size_fails() -> None:
    assert schema_error("data.sizes.sft=-1") == "config key 'data.sizes.sft': -1 is less than the minimum of 1"


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(DEFAULT.read_text(encoding="utf-8").replace("experiment: embedded", "experiment: other"), encoding="utf-8")
    assert load_config(path)["experiment"] == "other"
    path.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


# --- overrides ----------------------------------------------------------------------------------


def test_override_parses_yaml_values(default: dict) -> None:
    config = override(default, ["sft.epochs=7", "model.source=/nope", "rm.learning_rate=3.0e-4", "data.root=null"])
    assert config["sft"]["epochs"] == 7 and isinstance(config["sft"]["epochs"], int)
    assert config["model"]["source"] == "/nope"
    assert config["rm"]["learning_rate"] == pytest.approx(3.0e-4)
    assert config["data"]["root"] is None
    assert default["sft"]["epochs"] != 7 and default["model"]["source"] == "tiny"  # the input is not modified


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


def test_a_nucleus_is_refused_only_where_ppo_checkpoints_are_evaluated() -> None:
    """Their KL to the reference is measured on samples: a nucleus of the policy's may hold tokens the reference's
    excludes (infinite KL), so `sampling.top_p` must be 1; without PPO runs it is free."""
    message = r"^config key 'sampling.top_p': 0.9 < 1 .*KL of PPO checkpoints .*set it to 1$"
    with pytest.raises(ConfigError, match=message):
        load_config(assignments=["sampling.top_p=0.9"])
    with pytest.raises(ConfigError, match=r"'sampling.top_p'"):
        load_config(assignments=["sampling.top_p=0.9", "reward_models=[rm]", "rl.reward_models=[rm, mrm]"])
    for assignments in (["rl.reward_models=[]"], ["reward_models=[rm]", "rl.reward_models=[mrm]"]):
        assert load_config(assignments=["sampling.top_p=0.9", *assignments])["sampling"]["top_p"] == 0.9


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


def model_dir(path: Path, chat_template: bool = True) -> Path:
    """A directory that passes the config checks for a model: config.json and (optionally) a chat template."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}", encoding="utf-8")
    if chat_template:
        (path / "chat_template.jinja").write_text("{{ messages }}", encoding="utf-8")
    return path


def test_gold_model_directory_with_alpacafarm(config: dict, tmp_path: Path) -> None:
    model_dir(tmp_path)
    config["data"]["source"] = "alpacafarm"
    config["data"]["root"] = "data/alpacafarm"
    config["gold"]["source"] = str(tmp_path)
    check_config(config)  # a real model directory is accepted


def test_model_source_without_config_json(config: dict, tmp_path: Path) -> None:
    config["model"]["source"] = str(tmp_path)
    with pytest.raises(ConfigError, match=r"model\.source"):
        check_config(config)
    model_dir(tmp_path)
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


# --- bad input: every number, every reward-model list, chat templates ----------------------------


def numeric_keys(node: dict, prefix: str = "") -> list[str]:
    """Dotted keys of every int/float leaf (not bool, not in a list) of a config."""
    keys = []
    for key, value in node.items():
        if isinstance(value, dict):
            keys += numeric_keys(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            keys.append(f"{prefix}{key}")
    return keys


def assign(config: dict, key: str, value) -> dict:
    config = copy.deepcopy(config)
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value
    return config


def schema_refuses(config: dict) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    return str(err.value)


def test_every_number_of_the_default_has_a_lower_bound(default: dict) -> None:
    """-1 for any number is refused at that key (one compiled validator: snakemake's validate takes 0.2 s a call)."""
    import jsonschema

    from rmood.config import schema

    validator = jsonschema.Draft202012Validator(schema())
    keys = numeric_keys(default)
    assert len(keys) > 50 and "data.sizes.unlabeled" in keys and "rl.kl_coef" in keys
    for key in keys:
        errors = list(validator.iter_errors(assign(default, key, -1)))
        assert [(list(e.absolute_path), e.validator) for e in errors] in (
            [(key.split("."), "minimum")], [(key.split("."), "exclusiveMinimum")]
        ), key


def test_every_number_in_the_schema_has_a_lower_bound() -> None:
    """New keys too: an integer or number without `minimum`/`exclusiveMinimum` would accept negative sizes."""
    from rmood.config import SCHEMA

    document = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    unbounded = []

    def walk(node, path: str) -> None:
        if isinstance(node, dict):
            kinds = node.get("type")
            kinds = set(kinds) if isinstance(kinds, list) else {kinds}
            if kinds & {"integer", "number"} and not {"minimum", "exclusiveMinimum"} & node.keys():
                unbounded.append(path)
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(document, "schema")
    assert unbounded == []


@pytest.mark.parametrize("key", ["reward_models", "rl.reward_models", "distribution.reward_models"])
def test_unknown_reward_model_name_is_refused(default: dict, key: str) -> None:
    message = schema_refuses(assign(default, key, [*lookup(default, key)[:1], "nonsense"]))
    assert message.startswith(f"config key '{key}.1': 'nonsense' is not one of ['rm', ")  # the known methods, listed


@pytest.mark.parametrize("key", ["rl.reward_models", "distribution.reward_models"])
def test_ensembles_cannot_be_optimised_or_analysed(default: dict, key: str) -> None:
    assert "'ens_mean' is not one of" in schema_refuses(assign(default, key, ["ens_mean"]))


def test_reward_models_must_be_a_list(default: dict) -> None:
    message = schema_refuses(assign(default, "reward_models", "rm"))
    assert message == "config key 'reward_models': 'rm' is not of type 'array'"
    assert "should be non-empty" in schema_refuses(assign(default, "reward_models", []))


def test_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("experiment: x\nsft: {epochs: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.yaml:3:1: expected ',' or '}', but got '<stream end>'$"):
        load_config(path)


def test_local_model_needs_a_chat_template_or_chat_template_path(config: dict, tmp_path: Path) -> None:
    from rmood.config import has_chat_template

    config["model"]["source"] = str(model_dir(tmp_path / "base", chat_template=False))
    with pytest.raises(ConfigError, match=r"'sft\.chat_template_path'.*has no chat template"):
        check_config(config)
    (tmp_path / "base" / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}', encoding="utf-8")
    assert has_chat_template(tmp_path / "base")
    check_config(config)
    (tmp_path / "base" / "tokenizer_config.json").write_text('{"chat_template": null}', encoding="utf-8")
    assert not has_chat_template(tmp_path / "base")
    config["sft"]["chat_template_path"] = str(tmp_path / "missing.jinja")
    with pytest.raises(ConfigError, match=r"'sft\.chat_template_path'.*missing\.jinja' does not exist"):
        check_config(config)
    (tmp_path / "missing.jinja").write_text("{{ messages }}", encoding="utf-8")
    check_config(config)


def test_gold_reward_model_needs_a_chat_template(config: dict, tmp_path: Path) -> None:
    config["data"]["source"], config["data"]["root"] = "alpacafarm", "data/alpacafarm"
    config["gold"]["source"] = str(model_dir(tmp_path, chat_template=False))
    with pytest.raises(ConfigError, match=r"'gold\.source'.*no chat template"):
        check_config(config)
    (tmp_path / "tokenizer_config.json").write_text("not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'gold\.source'"):
        check_config(config)


# --- GPU engines, launchers, upload ------------------------------------------------------------------


@pytest.mark.parametrize("assignments, message", [
    (["rl.engine=verl"], r"'rl.reward_models': verl serves .* cannot load \['inform', 'mrm_pen'\]"),
    (["rl.engine=verl", "rl.reward_models=[rm]", "rl.missing_eos_penalty=1.0"], r"'rl.missing_eos_penalty'"),
    (["rl.engine=verl", "rl.reward_models=[rm]", "resources.ppo.gpus=4", "rl.verl.n_gpus_per_node=4",
      "rl.mini_batches=2", "rl.batch_size=30"], r"'rl.batch_size': 30 must be a multiple of rl.mini_batches \(2\) and of the GPUs verl uses \(4\)"),
    (["rl.engine=verl", "rl.reward_models=[rm]"], r"'resources.ppo.gpus': 0 GPUs per PPO job, fewer than rl.verl"),
    (["sampling.backend=vllm"], r"'resources.sample.gpus': 0 GPUs per sampling job, fewer than"),
    (["sampling.backend=vllm", "resources.sample.gpus=1", "sampling.temperature=3"], r"'sampling.temperature'"),
    (["sampling.backend=vllm", "resources.sample.gpus=1"], r"'rl.eval_jobs': run evaluates the checkpoints in the main"),
    (["training.launcher=accelerate", "training.accelerate_config=/no/such.yaml"], r"'training.accelerate_config'"),
    (["upload.enabled=true"], r"'upload.namespace': required when upload.enabled is true"),
    (["upload.enabled=true", "upload.namespace=me", "reward_models=[rm]", "upload.models=[sft, rm, inform]"],
     r"'upload.models': \['inform'\] are not in reward_models"),
])
def test_gpu_engine_launcher_and_upload_settings_are_checked(assignments: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(assignments=assignments)


def test_consistent_gpu_settings_pass() -> None:
    config = load_config(assignments=[
        "rl.engine=verl", "rl.reward_models=[rm, mrm]", "resources.ppo.gpus=2", "rl.verl.n_gpus_per_node=2",
        "sampling.backend=vllm", "resources.sample.gpus=1", "rl.eval_jobs=checkpoint", f"environments.verl={sys.executable}",
        "training.launcher=accelerate", "upload.enabled=true", "upload.namespace=me",
    ])
    assert config["rl"]["engine"] == "verl" and config["upload"]["models"] == ["sft", "rm", "mrm"]


# --- the LLM judge -------------------------------------------------------------------------------------

JUDGE = ["judge.base_url=http://gpu-node:8000/v1", "judge.model=judge"]


@pytest.mark.parametrize("assignments, message", [
    (["gold.source=judge"], r"config key 'judge.base_url': required when gold.source is judge"),
    (["annotator.source=judge", "judge.base_url=http://h/v1"],
     r"'judge.model': required when annotator.source is judge"),
    (["annotator.source=judge", *JUDGE, "judge.pairwise.template=config/judge/pointwise.txt"],
     r"'judge.pairwise.template': 'config/judge/pointwise.txt': a pairwise template uses the fields \['instruction', 'output_1', "
     r"'output_2'\], this one \['instruction', 'output'\]"),
    (["gold.source=judge", *JUDGE, "judge.pointwise.template=/no/such.txt"],
     r"'judge.pointwise.template': '/no/such.txt': cannot read the pointwise template"),
    (["judge.api_key_env=sk-live-1234"], r"'judge.api_key_env': 'sk-live-1234' does not match"),
    (["judge.base_url=gpu-node:8000"], r"'judge.base_url': 'gpu-node:8000' does not match"),
    (["judge.pairwise.request={messages: []}"], r"'judge.pairwise.request'"),
    (["judge.temperature=3"], r"'judge.temperature': 3 is greater than the maximum of 2"),
    (["annotator.source=human"], r"'annotator.source': 'human' is not one of \['simulated', 'judge'\]"),
])
def test_judge_settings_are_checked(assignments: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(assignments=assignments)


def test_a_judge_needs_only_the_template_of_its_task() -> None:
    config = load_config(assignments=["gold.source=judge", *JUDGE, "judge.api_key_env=JUDGE_KEY",
                                      "judge.pairwise.template=/no/such.txt"])
    assert config["gold"]["source"] == "judge" and config["annotator"]["source"] == "simulated"
    config = load_config(assignments=["annotator.source=judge", *JUDGE, "judge.pointwise.template=/no/such.txt"])
    assert config["judge"]["pairwise"]["template"] == "config/judge/pairwise.txt"


# --- replicates and the report ---------------------------------------------------------------------


@pytest.mark.parametrize("assignments, message", [
    (["replicates=[]"], r"config key 'replicates': \[\] should be non-empty"),
    (["replicates=[0, 0]"], r"config key 'replicates': .* has non-unique elements"),
    (["replicates=[-1]"], r"config key 'replicates.0': -1 is less than the minimum of 0"),
    (["report.gold_gap=0"], r"config key 'report.gold_gap': 0 is less than or equal to the minimum of 0"),
    (["replicate_scope=all"], r"config key 'replicate_scope': 'all' is not one of \['full', 'after_sft'\]"),
    (["report.level=1"], r"config key 'report.level': 1 is greater than or equal to the maximum of 1"),
    (["report.baseline=golden", "reward_models=[rm, mrm]"], r"config key 'report.baseline': 'golden' is not in reward_models"),
])
def test_replicate_and_report_settings_are_checked(assignments: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(assignments=assignments)


@pytest.mark.parametrize("assignments, message", [
    (["sampling.shards=2.0"], r"config key 'sampling.shards': 2.0 is not of type 'integer'$"),
    (["rl.kl_coef=.nan"], r"config key 'rl.kl_coef': nan is not of type 'number'$"),
    (["sft.epochs=.inf"], r"config key 'sft.epochs': inf is not of type 'number'$"),
    (["experiment=.."], r"config key 'experiment': '\.\.' does not match"),
    (["seed=4294967296"], r"config key 'seed': 4294967296 is greater than the maximum of 4294967295$"),
    (["replicates=[0, 4294967296]"], r"config key 'replicates.1': 4294967296 is greater than the maximum"),
    (["bon.shards=1025"], r"config key 'bon.shards': 1025 is greater than the maximum of 1024$"),
    (["distribution.prompts=300"], r"config key 'distribution.prompts': 300 analysed eval prompts, more than "
                                   r"data.sizes.eval \(256\)$"),
    ([f"rl.checkpoints={list(range(1, 1002))}", "rl.steps=1001"], r"config key 'rl.checkpoints': 1001 checkpoints per PPO run, more "
                                                 r"than 1000;"),
    (["rl.checkpoints=[5, 121]"], r"config key 'rl.checkpoints': update 121 is past rl.steps \(120\)$"),
    (["rl.kl_penalised.reward_model=golden", "reward_models=[rm]", "report.baseline=rm"],
     r"config key 'rl.kl_penalised.reward_model': 'golden' is not in reward_models$"),
])
def test_what_a_dry_run_or_a_job_could_not_take_is_refused(assignments: list[str], message: str) -> None:
    """Floats for integers (`range(2.0)`), NaN and inf (they pass every bound), `..` (results/.. is the project),
    seeds numpy refuses, and DAGs too large to build."""
    with pytest.raises(ConfigError, match=message):
        load_config(assignments=assignments)
    assert load_config(assignments=[f"rl.checkpoints={list(range(1, 1001))}", "rl.steps=1000",
                                    "distribution.prompts=256"])


def test_member_seeds_differ_from_every_replicate_seed_and_each_other() -> None:
    from rmood.config import member_seed

    seeds = {(r, m): member_seed(r, m) for r in range(20) for m in range(5)}
    assert len(set(seeds.values())) == len(seeds) and not set(seeds.values()) & set(range(20))
    assert all(0 <= s < 2**31 for s in seeds.values()) and member_seed(3, 1) == member_seed(3, 1)


def test_canonical_params_do_not_depend_on_the_merge_order() -> None:
    from rmood.config import canonical

    merged = [{"data": {"sizes": {"sft": 1, "ood": 2}, "source": "synthetic"}, "families": ["b", "a"]},
              {"families": ["b", "a"], "data": {"source": "synthetic", "sizes": {"ood": 2, "sft": 1}}}]
    assert [repr(canonical(value)) for value in merged] == [
        "{'data': {'sizes': {'ood': 2, 'sft': 1}, 'source': 'synthetic'}, 'families': ['b', 'a']}"] * 2
