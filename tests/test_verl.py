"""The verl PPO engine on CPU: config composition and its guards (FSDP and Megatron), verl's dataset reader on our
parquet, an FSDP checkpoint merged into ppo/<rm>/step_<k>/model, the Megatron run's launch and checkpoint
handling, and the RM servability check.

verl lives in its own environment (`.venv-verl`, built by `make envs`, or RMOOD_VERL_PYTHON). One driver script
(DRIVER below) runs there once per module and reports what it saw as JSON; the tests read that report and
check the merged model with this environment's transformers. PPO itself needs GPUs (vLLM rollouts); the driver
replaces only the `verl.trainer.main_ppo` launch by copying a checkpoint written with verl's own FSDP
checkpoint manager (2 ranks, gloo).

Megatron: verl's Megatron config composes, passes our checks and verl's `validate_config` without megatron-core
(not installed in verl's CPU environment: it needs CUDA). What cannot run here is verl's Megatron checkpoint
manager and `verl.model_merger --backend megatron` (both import megatron.core and build the model on a GPU with
NCCL): the Megatron checkpoints below are stand-ins laid out as verl's manager documents them
(`ckpt_contents.json` manifest, `model/huggingface` or `model/dist_ckpt`), and the Megatron merger's command line
is checked, not run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from rmood.io import read_json, read_jsonl, write_json
from test_models import save_reward_model

RL = dict(
    steps=2, checkpoints=[2], batch_size=4, mini_batches=2, ppo_epochs=1, learning_rate=1e-5, kl_coef=0.05,
    response_length=16, missing_eos_penalty=None, eval_samples=1,
    verl=dict(kl="reward", n_gpus_per_node=2, nnodes=1, tensor_parallel_size=1, gpu_memory_utilization=0.4,
              max_prompt_length=128, micro_batch_size_per_gpu=2, strategy="fsdp",
              megatron=dict(tensor_parallel=1, pipeline_parallel=1)),
)
MEGATRON_RL = {**RL, "verl": {**RL["verl"], "strategy": "megatron"}}
SAMPLING = dict(temperature=0.7)

DRIVER = r'''
import json, os, shutil, socket, subprocess, sys, time, traceback
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from rmood.rl import verl as V

args = json.loads(Path(sys.argv[1]).read_text())
policy, rm, prompts, tmp = args["policy"], args["reward_model"], args["prompts"], Path(args["tmp"])
report = {}


def case(fn):
    start = time.perf_counter()
    try:
        report[fn.__name__] = fn()
    except Exception:
        report[fn.__name__] = {"error": traceback.format_exc()}
    report.setdefault("seconds", {})[fn.__name__] = round(time.perf_counter() - start, 1)
    return fn


def refusal(override_list, config_name=V.ROOT_CONFIG):
    try:
        V.check_config(V.compose(override_list, config_name), rm, policy)
    except ValueError as err:
        return str(err)
    return None


def megatron_rl(n_gpus_per_node=2, **sizes):
    verl = {**args["megatron_rl"]["verl"], "n_gpus_per_node": n_gpus_per_node}
    return {**args["megatron_rl"], "verl": {**verl, "megatron": {**verl["megatron"], **sizes}}}


ROLES = ("actor_rollout_ref.actor", "actor_rollout_ref.ref", "critic")


@case
def config():
    override_list = V.overrides(policy, rm, tmp / "x.parquet", tmp / "work", 0, args["rl"], args["sampling"])
    cfg = V.compose(override_list)
    V.check_config(cfg, rm, policy)
    V.validate(cfg)
    legacy = [o for o in override_list if not o.startswith("reward.reward_model.")]
    return {
        "reward_model": cfg.reward.reward_model.model_path,
        "actor": cfg.actor_rollout_ref.model.path,
        "critic": cfg.critic.model.path,
        "use_kl_in_reward": cfg.algorithm.use_kl_in_reward,
        "kl_coef": cfg.algorithm.kl_ctrl.kl_coef,
        "save_freq": cfg.trainer.save_freq,
        "total_training_steps": cfg.trainer.total_training_steps,
        "legacy": refusal([*legacy, "reward_model.enable=true", f"reward_model.model.path={V.quote(rm)}"]),
        "custom": refusal([*override_list, "reward.custom_reward_function.path=/tmp/reward.py"]),
        "other_policy": refusal([*override_list, f"critic.model.path={V.quote(rm)}"]),
    }


@case
def dataset():
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    parquet = tmp / "data" / "prompts.parquet"
    V.write_parquet(prompts, parquet)
    override_list = V.overrides(policy, rm, parquet, tmp / "work", 0, args["rl"], args["sampling"])
    data = RLHFDataset([str(parquet)], AutoTokenizer.from_pretrained(policy), V.compose(override_list).data)
    keys = ("raw_prompt", "data_source", "reward_model", "extra_info")
    return [{key: data[i][key] for key in keys} for i in range(len(data))]


@case
def megatron():
    from omegaconf import OmegaConf

    name = V.CONFIG_NAMES["megatron"]
    override_list = V.overrides(policy, rm, tmp / "x.parquet", tmp / "work", 3, megatron_rl(), args["sampling"])
    cfg = V.compose(override_list, name)
    V.check_config(cfg, rm, policy)
    V.validate(cfg)
    wide = V.compose(V.overrides(policy, rm, tmp / "x.parquet", tmp / "work", 3,
                                 megatron_rl(8, tensor_parallel=2, pipeline_parallel=4), args["sampling"]), name)

    def parallel(c):
        keys = ("strategy", "megatron.tensor_model_parallel_size", "megatron.pipeline_model_parallel_size",
                "megatron.seed")
        return {role: [OmegaConf.select(c, f"{role}.{key}") for key in keys] for role in ROLES}

    def verl_refusal(extra):
        try:
            V.validate(V.compose([*override_list, *extra], name))
        except Exception as err:  # verl asserts
            return f"{type(err).__name__}: {err}"
        return None

    return {
        "parallel": parallel(cfg),
        "wide": parallel(wide),
        "model_engine": cfg.model_engine,
        "paths": [cfg.reward.reward_model.model_path, cfg.actor_rollout_ref.model.path, cfg.critic.model.path,
                  cfg.trainer.default_local_dir],
        "seeds": [cfg.data.seed, cfg.actor_rollout_ref.rollout.seed, cfg.actor_rollout_ref.actor.data_loader_seed],
        "kl": [cfg.algorithm.use_kl_in_reward, cfg.algorithm.kl_ctrl.kl_coef],
        "fsdp_keys": [o for o in override_list if "fsdp" in o],
        "tp_heads": refusal(V.overrides(policy, rm, tmp / "x.parquet", tmp / "work", 3, megatron_rl(tensor_parallel=2),
                                        args["sampling"]), name),
        "pp_layers": refusal(V.overrides(policy, rm, tmp / "x.parquet", tmp / "work", 3,
                                         megatron_rl(pipeline_parallel=2), args["sampling"]), name),
        "ref_differs": refusal([*override_list, "actor_rollout_ref.ref.megatron.tensor_model_parallel_size=2"], name),
        "legacy": refusal([*override_list, "reward_model.enable=true"], name),
        "other_policy": refusal([*override_list, f"critic.model.path={V.quote(rm)}"], name),
        "verl_context_parallel": verl_refusal(["actor_rollout_ref.actor.megatron.context_parallel_size=4"]),
    }


def rank(rank, port, out, expected):
    """One FSDP rank as verl's FSDP engine builds it (FSDP1 on a device mesh), saving with its checkpoint manager."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    from omegaconf import OmegaConf
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from verl.utils.checkpoint.fsdp_checkpoint_manager import FSDPCheckpointManager
    from verl.utils.fsdp_utils import get_fsdp_wrap_policy
    from verl.workers.engine.fsdp.utils import get_sharding_strategy

    model = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))  # the "trained" policy, unlike the SFT one
    if rank == 0:
        model.save_pretrained(expected)
    mesh = init_device_mesh("cpu", (2,), mesh_dim_names=("fsdp",))
    fsdp = FSDP(model, auto_wrap_policy=get_fsdp_wrap_policy(model, {"min_num_params": 0}), device_mesh=mesh,
                device_id=torch.device("cpu"), sharding_strategy=get_sharding_strategy(mesh), use_orig_params=False)
    contents = OmegaConf.create({"save_contents": ["model", "optimizer", "extra"]})
    optimizer = torch.optim.AdamW(fsdp.parameters())
    manager = FSDPCheckpointManager(fsdp, optimizer, None, AutoTokenizer.from_pretrained(policy), contents)
    manager.save_checkpoint(str(out), global_step=2)
    dist.destroy_process_group()


@case
def checkpoint():
    import transformers  # noqa: F401  imported once, before forking the ranks
    import verl.utils.checkpoint.fsdp_checkpoint_manager  # noqa: F401
    import verl.workers.engine.fsdp.utils  # noqa: F401
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ranks_args = (port, tmp / "checkpoint" / "actor", tmp / "expected")
    mp.start_processes(rank, args=ranks_args, nprocs=2, start_method="fork")
    return sorted(p.name for p in (tmp / "checkpoint" / "actor").iterdir())


@case
def train():
    launched, real_run = [], V.run

    def fake_run(command, what, cwd=None):
        """main_ppo needs GPUs. The first launch parses its exact command line (hydra's --cfg job), leaves the
        FSDP checkpoint and dies like a killed job; the rerun must find the checkpoint kept, and finishes."""
        if command[1:3] != ["-m", "verl.trainer.main_ppo"]:
            return real_run(command, what, cwd)
        work = Path(cwd)
        if not launched:
            job = subprocess.run([*command, "--cfg", "job"], cwd=cwd, capture_output=True, text=True, check=True)
            launched.append({"config": yaml.safe_load(job.stdout)})
            shutil.copytree(tmp / "checkpoint", work / "global_step_2")
            raise RuntimeError(f"{what} failed (exit status 137)")
        launched.append({"kept": (work / "global_step_2" / "actor" / "fsdp_config.json").is_file()})
        (work / "latest_checkpointed_iteration.txt").write_text("2")

    V.run = fake_run
    out, work = tmp / "ppo" / "rm" / "step_2" / "model", tmp / "ppo" / "rm" / "work"
    call = (policy, rm, prompts, [str(out)], str(work), 0, args["rl"], args["sampling"])
    try:
        V.train_ppo_verl(*call)
        killed = None
    except RuntimeError as err:
        killed = str(err)
    V.train_ppo_verl(*call)  # resumes
    V.train_ppo_verl(*call)  # every output exists: launches nothing
    return {"launched": launched, "killed": killed, "out": str(out), "work": sorted(p.name for p in work.iterdir())}


@case
def megatron_train():
    """As `train`, with rl.verl.strategy megatron: main_ppo's hydra parses the exact command line; the checkpoint
    is a stand-in laid out as verl's Megatron manager saves by default (Hugging Face weights through the bridge in
    model/huggingface, then ckpt_contents.json), since that manager needs megatron-core and a GPU."""
    launched, real_run = [], V.run

    def fake_run(command, what, cwd=None):
        if command[1:3] != ["-m", "verl.trainer.main_ppo"]:
            return real_run(command, what, cwd)
        job = subprocess.run([*command, "--cfg", "job"], cwd=cwd, capture_output=True, text=True, check=True)
        launched.append({"command": command[3:5], "config": yaml.safe_load(job.stdout)})
        actor = Path(cwd) / "global_step_2" / "actor"
        shutil.copytree(tmp / "expected", actor / "model" / "huggingface")
        contents = {"model": {"path": "model/huggingface", "format": "huggingface", "backend": "mbridge"}}
        (actor / "ckpt_contents.json").write_text(json.dumps({"schema_version": 2, "framework": "megatron",
                                                              "contents": contents}))
        (Path(cwd) / "latest_checkpointed_iteration.txt").write_text("2")

    V.run = fake_run
    out, work = tmp / "megatron" / "rm" / "step_2" / "model", tmp / "megatron" / "rm" / "work"
    try:
        V.train_ppo_verl(policy, rm, prompts, [str(out)], str(work), 0, args["megatron_rl"], args["sampling"])
    finally:
        V.run = real_run
    written = yaml.safe_load((work / "config.yaml").read_text())["actor_rollout_ref"]["actor"]["strategy"]
    return {"launched": launched, "out": str(out), "work": sorted(p.name for p in work.iterdir()), "written": written}


Path(sys.argv[2]).write_text(json.dumps(report, default=str))
'''


def verl_python() -> Path:
    """verl's interpreter: RMOOD_VERL_PYTHON or .venv-verl/bin/python; fails (never skips) if it is missing."""
    python = Path(os.environ.get("RMOOD_VERL_PYTHON") or ROOT / ".venv-verl" / "bin" / "python")
    if not python.is_file():
        pytest.fail(f"verl's environment is missing ({python}): run `make envs` (or set RMOOD_VERL_PYTHON)")
    return python


@pytest.fixture(scope="module")
def models(tiny_base, tmp_path_factory) -> dict[str, Path]:
    """The tiny policy and a tiny RM in a folder whose name needs quoting in a hydra override."""
    folder = tmp_path_factory.mktemp("verl") / "tiny models, v=1"
    policy = Path(shutil.copytree(tiny_base, folder / "policy"))
    return {"policy": policy, "reward_model": save_reward_model(tiny_base, folder / "rm")}


@pytest.fixture(scope="module")
def report(models, prompt_data, tmp_path_factory) -> dict:
    """What the driver saw in verl's environment (one run for every test of this module)."""
    python = verl_python()
    tmp = tmp_path_factory.mktemp("verl_run")
    (tmp / "driver.py").write_text(DRIVER)
    args = {**{k: str(v) for k, v in models.items()}, "prompts": str(prompt_data["preference"]), "tmp": str(tmp),
            "rl": RL, "megatron_rl": MEGATRON_RL, "sampling": SAMPLING}
    write_json(tmp / "args.json", args)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_DATASETS_CACHE": str(tmp / "hf_datasets")}
    result = subprocess.run([str(python), str(tmp / "driver.py"), str(tmp / "args.json"), str(tmp / "report.json")],
                            capture_output=True, text=True, env=env, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    seen = read_json(tmp / "report.json")
    print(f"seconds per driver case in verl's environment: {seen['seconds']}")
    return {**seen, "tmp": tmp, "log": result.stdout + result.stderr}


def outcome(report: dict, case: str):
    value = report[case]
    if isinstance(value, dict) and "error" in value:
        pytest.fail(f"driver case {case!r} failed in verl's environment:\n{value['error']}")
    return value


def test_composed_config_passes_our_checks_and_verls(report, models):
    config = outcome(report, "config")
    assert config["reward_model"] == str(models["reward_model"].resolve())
    assert config["actor"] == config["critic"] == str(models["policy"].resolve())
    assert config["use_kl_in_reward"] is True and config["kl_coef"] == RL["kl_coef"]
    assert (config["save_freq"], config["total_training_steps"]) == (2, RL["steps"])  # every gcd(rl.checkpoints) updates
    assert "[validate_config] All configuration checks passed" in report["log"]


def test_legacy_reward_keys_and_custom_rewards_are_refused(report):
    config = outcome(report, "config")
    assert "legacy key(s) reward_model.enable" in config["legacy"]
    assert "reward.reward_model.enable is not true" in config["legacy"]
    assert "custom_reward_function.path" in config["custom"]
    assert "critic.model.path" in config["other_policy"] and "not the SFT policy" in config["other_policy"]


def test_verls_dataset_reader_yields_our_prompts(report, prompt_data):
    rows = outcome(report, "dataset")
    records = read_jsonl(prompt_data["preference"])
    assert len(rows) == len(records)
    for row, record in zip(rows, records):
        assert row["raw_prompt"] == [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
        assert row["extra_info"]["prompt_id"] == record["id"]
        assert row["data_source"] == record["source"]
        assert row["reward_model"] == {"style": "model", "ground_truth": record["reference"]}


def test_fsdp_checkpoint_becomes_a_loadable_policy(report, models):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert "model_world_size_2_rank_1.pt" in outcome(report, "checkpoint")
    train = outcome(report, "train")
    assert train["killed"] == "verl's PPO trainer failed (exit status 137)"
    assert len(train["launched"]) == 2, "the rerun launches once more, the third call nothing"
    assert train["launched"][1]["kept"], "a rerun with the same settings must keep verl's checkpoints (resume)"
    config = train["launched"][0]["config"]  # what main_ppo's hydra made of the exact command line
    assert config["reward"]["reward_model"]["enable"] is True
    assert config["reward"]["reward_model"]["model_path"] == str(models["reward_model"].resolve())
    assert config["actor_rollout_ref"]["model"]["path"] == str(models["policy"].resolve())
    assert Path(config["trainer"]["default_local_dir"]).name == "work"
    assert {"config.yaml", "prompts.parquet"} <= set(train["work"]) and "global_step_2" not in train["work"]
    out = Path(train["out"])
    assert sorted(p.name for p in out.parent.iterdir()) == ["model"]  # no temporary folder left behind
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).state_dict()
    expected = AutoModelForCausalLM.from_pretrained(report["tmp"] / "expected", dtype=torch.float32).state_dict()
    assert merged.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(merged[name], tensor.bfloat16().float(), rtol=0, atol=0)  # the merger saves bf16
    template = AutoTokenizer.from_pretrained(models["policy"]).chat_template
    assert template and AutoTokenizer.from_pretrained(out).chat_template == template


def test_megatron_config_composes_with_our_settings_and_passes_verls_checks(report, models):
    megatron = outcome(report, "megatron")
    assert megatron["model_engine"] == "megatron"
    assert megatron["parallel"] == {role: ["megatron", 1, 1, 3] for role in ("actor_rollout_ref.actor",
                                                                           "actor_rollout_ref.ref", "critic")}
    assert megatron["wide"] == {role: ["megatron", 2, 4, 3] for role in ("actor_rollout_ref.actor",
                                                                       "actor_rollout_ref.ref", "critic")}
    rm, policy = str(models["reward_model"].resolve()), str(models["policy"].resolve())
    assert megatron["paths"][:3] == [rm, policy, policy] and Path(megatron["paths"][3]).name == "work"
    assert megatron["seeds"] == [3, 3, 3] and megatron["kl"] == [True, RL["kl_coef"]]
    assert megatron["fsdp_keys"] == [], "FSDP-only keys do not exist in verl's Megatron config"
    assert report["log"].count("[validate_config] All configuration checks passed") >= 2  # FSDP and Megatron


def test_megatron_config_that_cannot_train_the_policy_is_refused(report):
    megatron = outcome(report, "megatron")  # the tiny policy: 2 attention heads, 1 key-value head, 1 layer
    assert "tensor_model_parallel_size 2 does not divide the policy's 1 key-value heads" in megatron["tp_heads"]
    assert "rl.verl.megatron.tensor_parallel" in megatron["tp_heads"]
    assert "pipeline_model_parallel_size 2 does not divide the policy's 1 layers" in megatron["pp_layers"]
    assert "tensor_model_parallel_size differs between actor, reference and critic" in megatron["ref_differs"]
    assert "legacy key(s) reward_model.enable" in megatron["legacy"]
    assert "critic.model.path" in megatron["other_policy"] and "not the SFT policy" in megatron["other_policy"]
    assert megatron["verl_context_parallel"] == ("AssertionError: n_gpus (2) must be divisible by model_parallel_size "
                                                 "(1) times context_parallel_size (4)")


def test_megatron_run_launches_verls_megatron_config_and_keeps_its_policy(report, models):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train = outcome(report, "megatron_train")
    assert train["written"] == "megatron"
    [launch] = train["launched"]
    assert launch["command"] == ["--config-name", "ppo_megatron_trainer"]
    config = launch["config"]  # what main_ppo's hydra made of the exact command line
    for section in (config["actor_rollout_ref"]["actor"], config["critic"]):
        assert section["strategy"] == "megatron"
        assert (section["megatron"]["tensor_model_parallel_size"], section["megatron"]["pipeline_model_parallel_size"],
                section["megatron"]["seed"]) == (1, 1, 0)
    assert config["actor_rollout_ref"]["model"]["path"] == str(models["policy"].resolve())
    assert config["reward"]["reward_model"]["model_path"] == str(models["reward_model"].resolve())
    assert {"config.yaml", "prompts.parquet"} <= set(train["work"]) and "global_step_2" not in train["work"]
    out = Path(train["out"])
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).state_dict()
    expected = AutoModelForCausalLM.from_pretrained(report["tmp"] / "expected", dtype=torch.float32).state_dict()
    assert merged.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(merged[name], tensor, rtol=0, atol=0)  # the bridge's HF weights, copied
    assert AutoTokenizer.from_pretrained(out).chat_template == AutoTokenizer.from_pretrained(models["policy"]).chat_template


def megatron_checkpoint(folder: Path, model_format: str | None) -> Path:
    """A stand-in actor folder with verl's Megatron manifest (`ckpt_contents.json`, written last by its manager)."""
    folder.mkdir(parents=True)
    contents = {} if model_format is None else {"model": {"path": "model/x", "format": model_format}}
    write_json(folder / "ckpt_contents.json", {"schema_version": 2, "framework": "megatron", "contents": contents})
    return folder


def test_checkpoint_backend_is_read_from_the_folder(tmp_path):
    from rmood.rl.verl import checkpoint_backend

    fsdp = tmp_path / "fsdp"
    fsdp.mkdir()
    write_json(fsdp / "fsdp_config.json", {})
    assert checkpoint_backend(fsdp) == "fsdp"
    assert checkpoint_backend(megatron_checkpoint(tmp_path / "dist", "megatron_dist_checkpoint")) == "megatron"
    assert checkpoint_backend(megatron_checkpoint(tmp_path / "hf", "huggingface")) == "megatron-hf"
    with pytest.raises(ValueError, match="saved as None"):
        checkpoint_backend(megatron_checkpoint(tmp_path / "none", None))
    (tmp_path / "partial" / "model" / "dist_ckpt").mkdir(parents=True)  # killed before the manifest was written
    with pytest.raises(FileNotFoundError, match="neither FSDP's fsdp_config.json nor Megatron's ckpt_contents.json"):
        checkpoint_backend(tmp_path / "partial")


def test_megatron_shards_go_through_verls_megatron_merger(models, tmp_path, monkeypatch):
    """The merger itself needs megatron-core and a GPU (NCCL): its command line is checked, its output stood in for."""
    from rmood.rl import verl

    actor = megatron_checkpoint(tmp_path / "global_step_2" / "actor", "megatron_dist_checkpoint")
    commands = []

    def fake_run(command, what, cwd=None):
        commands.append(command)
        assert (actor / "model" / "huggingface" / "config.json").is_file(), "the merger reads the shape there"
        target = Path(command[command.index("--target_dir") + 1])
        for path in models["policy"].iterdir():
            shutil.copy2(path, target / path.name)

    monkeypatch.setattr(verl, "run", fake_run)
    verl.merge_checkpoint(actor, tmp_path / "model", models["policy"])
    [command] = commands
    assert command[1:] == ["-m", "verl.model_merger", "merge", "--backend", "megatron", "--local_dir", str(actor),
                           "--target_dir", command[-2], "--tie-word-embedding"]  # the tiny policy ties its embeddings
    assert (tmp_path / "model" / "config.json").is_file()


def edit_config(rm: Path, folder: Path, **changes) -> Path:
    """A copy of the RM folder whose config.json has `changes` (None deletes a key)."""
    copy = Path(shutil.copytree(rm, folder))
    config = read_json(copy / "config.json")
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    write_json(copy / "config.json", config)
    return copy


@pytest.mark.parametrize("architecture, model_type", [
    ("InfoRMForSequenceClassification", "rmood_inform"),
    ("MRMForSequenceClassification", "rmood_mrm"),
])
def test_rmoods_own_rm_classes_are_not_servable(models, tmp_path, architecture, model_type):
    from rmood.rl.verl import check_servable

    rm = edit_config(models["reward_model"], tmp_path / "rm", architectures=[architecture], model_type=model_type)
    with pytest.raises(ValueError, match=f"{architecture}.*can serve are rm, rrm, golden, warm, mrm"):
        check_servable(rm)


def test_servable_needs_one_label_and_a_chat_template(models, tmp_path, capsys):
    from rmood.rl.verl import check_servable

    check_servable(models["reward_model"])
    two = edit_config(models["reward_model"], tmp_path / "two", id2label={"0": "A", "1": "B"}, label2id=None)
    with pytest.raises(ValueError, match="num_labels 1.*has 2"):
        check_servable(two)
    bare = Path(shutil.copytree(models["reward_model"], tmp_path / "bare"))
    (bare / "chat_template.jinja").unlink()
    with pytest.raises(ValueError, match="no chat template"):
        check_servable(bare)
    check_servable(edit_config(models["reward_model"], tmp_path / "mrm", reward_bias=1.5))
    assert "without config.reward_bias (1.5)" in capsys.readouterr().out


def test_overrides_refuse_what_verl_cannot_do(tmp_path):
    from rmood.rl.verl import overrides

    def build(**changes):
        rl = {**RL, **changes, "verl": {**RL["verl"], **changes.pop("verl", {})}}
        return overrides("p", "r", tmp_path / "t.parquet", tmp_path, 0, rl, SAMPLING)

    assert "algorithm.use_kl_in_reward=false" in build(verl={"kl": "loss"})
    assert "actor_rollout_ref.actor.use_kl_loss=true" in build(verl={"kl": "loss"})
    with pytest.raises(ValueError, match="rl.verl.kl"):
        build(verl={"kl": "both"})
    with pytest.raises(ValueError, match="missing_eos_penalty"):
        build(missing_eos_penalty=1.0)
    with pytest.raises(ValueError, match="multiple of rl.mini_batches"):
        build(batch_size=5)
    with pytest.raises(ValueError, match="quote"):
        overrides("it's", "r", tmp_path / "t.parquet", tmp_path, 0, RL, SAMPLING)
    with pytest.raises(ValueError, match="rl.verl.strategy is 'deepspeed'"):
        build(verl={"strategy": "deepspeed"})
    with pytest.raises(ValueError, match=r"tensor_parallel × pipeline_parallel \(4\) must divide the GPUs .* = 2\)"):
        build(verl={"strategy": "megatron", "megatron": {"tensor_parallel": 2, "pipeline_parallel": 2}})
    fsdp = build()
    assert "actor_rollout_ref.actor.fsdp_config.seed=0" in fsdp and not [o for o in fsdp if "megatron" in o]


@pytest.mark.parametrize("assignment, message", [
    ("rl.verl.strategy=deepspeed", r"'rl.verl.strategy': 'deepspeed' is not one of \['fsdp', 'megatron'\]"),
    ("rl.verl.megatron.tensor_parallel=0", r"'rl.verl.megatron.tensor_parallel': 0 is less than the minimum of 1"),
    ("rl.verl.megatron.pipeline_parallel=1.5", r"'rl.verl.megatron.pipeline_parallel': 1.5 is not of type 'integer'"),
    ("rl.verl.megatron.context_parallel=2", r"'rl.verl.megatron': Additional properties .*'context_parallel'"),
])
def test_the_schema_holds_strategy_and_megatron_sizes_strictly(assignment, message):
    from rmood.config import ConfigError, load_config

    assert load_config()["rl"]["verl"]["strategy"] == "fsdp"  # the default: today's FSDP run
    with pytest.raises(ConfigError, match=message):
        load_config(assignments=[assignment])


def test_only_the_megatron_run_names_its_config():
    from rmood.rl.verl import CONFIG_NAMES, launch_command

    assert launch_command(CONFIG_NAMES["fsdp"], ["a=1"], ["h=2"])[1:] == ["-m", "verl.trainer.main_ppo", "a=1", "h=2"]
    assert launch_command(CONFIG_NAMES["megatron"], ["a=1"], [])[1:] == [
        "-m", "verl.trainer.main_ppo", "--config-name", "ppo_megatron_trainer", "a=1"]


def test_a_failing_command_is_a_clear_error():
    from rmood.rl.verl import run

    with pytest.raises(RuntimeError, match="the thing failed \\(exit status 3\\)"):
        run([sys.executable, "-c", "raise SystemExit(3)"], "the thing")


def test_prompt_rows_need_role_and_content():
    from rmood.io import DataError
    from rmood.rl.verl import verl_rows

    with pytest.raises(DataError, match="prompt p1: messages"):
        verl_rows([{"id": "p1", "messages": [{"content": "hi", "name": "x"}]}])
    assert verl_rows([{"id": "p2", "messages": [{"role": "user", "content": "hi"}]}])[0]["data_source"] == "rmood"
