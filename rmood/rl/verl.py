"""PPO against one reward model with verl (Ray, FSDP or Megatron, vLLM rollouts): the cluster engine, `rl.engine: verl`.

This module runs inside verl's own environment (`envs/verl.txt`, `envs/verl.yml`): it imports verl's stack
(hydra, omegaconf, torch, transformers, pyarrow) and only light rmood modules. `train_ppo_verl` writes the
prompts as a parquet in verl's schema, composes verl's own `ppo_trainer` config (`rl.verl.strategy: fsdp`) or
`ppo_megatron_trainer` config (`megatron`, with `rl.verl.megatron`'s tensor and pipeline parallel sizes) from
ours with hydra overrides, checks it, launches `python -m verl.trainer.main_ppo` with that config name (it
resumes from its last checkpoint), then turns the actor checkpoint of every saved update into a plain Hugging
Face causal LM at `ppo/<rm>/step_<k>/model` (`merge_checkpoint`: verl's model merger, backend by what the
checkpoint folder holds).

verl 0.9 serves the reward model with vLLM's classify endpoint and takes the raw logit at the last token of
prompt + response rendered with the RM's own chat template. So the RM must be a transformers
`*ForSequenceClassification` with one label and a chat template (`check_servable`): rm, rrm, golden, warm
and mrm are; InfoRM and the penalised MRM (rmood's own classes) are not. The exported MRM's
`config.reward_bias` is not applied: a constant, which changes no PPO advantage.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from rmood.rm.methods import servable_methods
from rmood.io import UMASK, DataError, atomic_dir, atomic_open, atomic_path, read_json, read_jsonl
from rmood.rl.ppo import checkpoint_dirs
from rmood.rl import resolve
from rmood.training import fingerprint, prepare_checkpoints

KL_MODES = ("reward", "loss")
ROOT_CONFIG = "ppo_trainer"
CONFIG_NAMES = {"fsdp": ROOT_CONFIG, "megatron": "ppo_megatron_trainer"}  # rl.verl.strategy -> verl's root config
MEGATRON_SIZES = {"tensor_parallel": "tensor_model_parallel_size", "pipeline_parallel": "pipeline_model_parallel_size"}
MEGATRON_MANIFEST = "ckpt_contents.json"  # written last by verl's Megatron checkpoint manager: the save is complete
PARQUET = "prompts.parquet"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model",
)
LEGACY_SECTIONS = ("reward_model", "custom_reward_function", "sandbox_fusion")


def verl_rows(records: list[dict[str, Any]], split: str = "train") -> list[dict[str, Any]]:
    """Our prompt records (`id`, `messages`, `source`, optional `reference`) as rows of verl's RL dataset schema."""
    rows = []
    for index, record in enumerate(records):
        messages = record["messages"]
        if not messages or any(not isinstance(m, dict) or not {"role", "content"} <= m.keys() for m in messages):
            raise DataError(f"prompt {record['id']}: messages must be a non-empty list of {{role, content}}")
        rows.append({
            "prompt": [{"role": str(m["role"]), "content": str(m["content"])} for m in messages],
            "data_source": str(record.get("source") or "rmood"),
            "ability": "instruction",
            "reward_model": {"style": "model", "ground_truth": str(record.get("reference") or "")},
            "extra_info": {"split": split, "index": index, "prompt_id": str(record["id"])},
        })
    return rows


def write_parquet(prompts_jsonl: str | Path, out: str | Path, split: str = "train") -> int:
    """Write the prompts of a JSONL file as a parquet in verl's schema (atomically); returns how many."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = read_jsonl(prompts_jsonl, required=("id", "messages"))
    if not records:
        raise DataError(f"{prompts_jsonl}: no prompts")
    with atomic_path(out) as tmp:
        pq.write_table(pa.Table.from_pylist(verl_rows(records, split)), tmp)
    return len(records)


def quote(value: str | Path) -> str:
    """A string as a quoted hydra override value; refuses what hydra would not keep verbatim."""
    value = str(value)
    if any(bad in value for bad in ("'", "\\", "${")):
        raise ValueError(f"{value}: a path given to verl may not contain a quote, a backslash or '${{'")
    return f"'{value}'"


def overrides(
    policy: str | Path,
    reward_model: str | Path,
    train_file: str | Path,
    work_dir: str | Path,
    seed: int,
    rl: dict[str, Any],
    sampling: dict[str, Any],
    name: str = "ppo",
) -> list[str]:
    """Hydra overrides that turn verl's own `ppo_trainer` config into our PPO run (`rl`, `rl.verl`, `sampling`).

    `rl.verl.strategy` fsdp overrides verl's `ppo_trainer`; megatron overrides `ppo_megatron_trainer` (compose
    with `CONFIG_NAMES[strategy]`), with `rl.verl.megatron`'s tensor/pipeline parallel sizes and the seed set for
    actor and critic (the reference follows the actor in verl's config).
    Actor, reference and critic start from the SFT `policy`; the reward is `reward_model` served by vLLM;
    KL to the reference goes into the reward (`rl.verl.kl: reward`, as TRL does) or into the actor loss
    (`loss`), weighted by `rl.kl_coef`. Checkpoints go to `work_dir/global_step_<k>` every g updates (verl saves
    periodically; g = the greatest common divisor of `rl.checkpoints`, so each of them is among the saved) and at
    the last; `trainer.resume_mode=auto` resumes a killed run from the last one.
    """
    verl = rl["verl"]
    if verl["kl"] not in KL_MODES:
        raise ValueError(f"rl.verl.kl is {verl['kl']!r}; it must be one of {', '.join(KL_MODES)}")
    strategy = verl["strategy"]
    if strategy not in CONFIG_NAMES:
        raise ValueError(f"rl.verl.strategy is {strategy!r}; it must be one of {', '.join(CONFIG_NAMES)}")
    if rl["batch_size"] % rl["mini_batches"]:
        raise ValueError(f"rl.batch_size ({rl['batch_size']}) must be a multiple of "
                         f"rl.mini_batches ({rl['mini_batches']})")
    if rl.get("missing_eos_penalty") is not None:
        raise ValueError("rl.missing_eos_penalty is a TRL option that verl does not have; set it to null for verl")
    kl_in_reward = verl["kl"] == "reward"
    micro = verl["micro_batch_size_per_gpu"]
    train = quote(Path(train_file).resolve())
    rollout = {
        "name": "vllm",
        "tensor_model_parallel_size": verl["tensor_parallel_size"],
        "gpu_memory_utilization": verl["gpu_memory_utilization"],
    }
    settings: dict[str, Any] = {
        "algorithm.adv_estimator": "gae",
        "algorithm.use_kl_in_reward": kl_in_reward,
        "algorithm.kl_ctrl.type": "fixed",
        "algorithm.kl_ctrl.kl_coef": rl["kl_coef"],
        "actor_rollout_ref.actor.use_kl_loss": not kl_in_reward,
        "actor_rollout_ref.actor.kl_loss_coef": rl["kl_coef"],
        "actor_rollout_ref.model.path": quote(Path(policy).resolve()),
        "actor_rollout_ref.actor.optim.lr": rl["learning_rate"],
        "actor_rollout_ref.actor.ppo_mini_batch_size": rl["batch_size"] // rl["mini_batches"],
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": micro,
        "actor_rollout_ref.actor.ppo_epochs": rl["ppo_epochs"],
        "actor_rollout_ref.actor.data_loader_seed": seed,
        "actor_rollout_ref.actor.fsdp_config.seed": seed,
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": micro,
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": micro,
        "actor_rollout_ref.rollout.n": 1,
        "actor_rollout_ref.rollout.temperature": sampling["temperature"],
        "actor_rollout_ref.rollout.seed": seed,
        **{f"actor_rollout_ref.rollout.{key}": value for key, value in rollout.items()},
        "critic.model.path": quote(Path(policy).resolve()),
        "critic.optim.lr": rl["learning_rate"],
        "critic.ppo_micro_batch_size_per_gpu": micro,
        "critic.ppo_epochs": rl["ppo_epochs"],
        "critic.data_loader_seed": seed,
        "reward.reward_model.enable": True,
        "reward.reward_model.model_path": quote(Path(reward_model).resolve()),
        **{f"reward.reward_model.rollout.{key}": value for key, value in rollout.items()},
        "data.train_files": f"[{train}]",
        "data.val_files": f"[{train}]",
        "data.train_batch_size": rl["batch_size"],
        "data.max_prompt_length": verl["max_prompt_length"],
        "data.max_response_length": rl["response_length"],
        "data.return_raw_chat": True,
        "data.filter_overlong_prompts": False,
        "data.truncation": "error",
        "data.shuffle": True,
        "data.seed": seed,
        "trainer.total_training_steps": rl["steps"],
        "trainer.total_epochs": rl["steps"],  # an epoch holds at least one update, so the step count decides
        "trainer.save_freq": math.gcd(*rl["checkpoints"]),
        "trainer.test_freq": -1,
        "trainer.val_before_train": False,
        "trainer.n_gpus_per_node": verl["n_gpus_per_node"],
        "trainer.nnodes": verl["nnodes"],
        "trainer.default_local_dir": quote(Path(work_dir).resolve()),
        "trainer.max_critic_ckpt_to_keep": 1,  # the critic only serves a resume; every actor checkpoint is merged
        "trainer.resume_mode": "auto",
        "trainer.logger": "[console]",
        "trainer.project_name": "rmood",
        "trainer.experiment_name": quote(name),
    }
    if strategy == "megatron":
        settings = megatron_settings(settings, verl["megatron"], seed, verl["n_gpus_per_node"] * verl["nnodes"])
    return [f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in settings.items()]


def megatron_settings(settings: dict[str, Any], megatron: dict[str, int], seed: int, gpus: int) -> dict[str, Any]:
    """The FSDP `settings` for verl's Megatron workers: the seed and the parallel sizes of actor and critic.

    The FSDP seed key does not exist there (hydra would refuse it); the reference takes the actor's sizes and
    seed through verl's own interpolations (`check_config` makes sure it does).
    """
    parallel = megatron["tensor_parallel"] * megatron["pipeline_parallel"]
    if gpus % parallel:
        raise ValueError(f"rl.verl.megatron: tensor_parallel × pipeline_parallel ({parallel}) must divide the GPUs "
                         f"verl uses (rl.verl.n_gpus_per_node × nnodes = {gpus})")
    out = {key: value for key, value in settings.items() if key != "actor_rollout_ref.actor.fsdp_config.seed"}
    for role in ("actor_rollout_ref.actor", "critic"):
        out[f"{role}.megatron.seed"] = seed
        out |= {f"{role}.megatron.{theirs}": megatron[ours] for ours, theirs in MEGATRON_SIZES.items()}
    return out


def config_dir() -> Path:
    """verl's own trainer config folder (`verl/trainer/config`)."""
    import verl

    return Path(verl.__file__).resolve().parent / "trainer" / "config"


def compose(override_list: list[str], config_name: str = ROOT_CONFIG):
    """verl's `config_name` config (`ppo_trainer`, `ppo_megatron_trainer`) with the overrides, composed by hydra as
    `main_ppo --config-name <config_name>` would."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
            return hydra_compose(config_name, overrides=list(override_list))
    finally:
        GlobalHydra.instance().clear()


def _get(cfg, key: str) -> Any:
    """The value at a dotted key; None if it is absent, null or mandatory-but-unset ('???')."""
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, throw_on_missing=False)


def _same_path(value: Any, expected: str | Path) -> bool:
    return value is not None and Path(str(value)).expanduser().resolve() == Path(expected).resolve()


def _set_leaves(cfg, key: str) -> list[str]:
    """Dotted keys at or under `key` whose value is set (not null, not '???')."""
    from omegaconf import DictConfig

    node = _get(cfg, key)
    if isinstance(node, DictConfig):
        return [leaf for name in node for leaf in _set_leaves(cfg, f"{key}.{name}")]
    return [] if node is None else [key]


def check_config(cfg, reward_model: str | Path, policy: str | Path) -> None:
    """Refuse a composed verl config that would not optimise `policy` against `reward_model`.

    Guards verl 0.9's silent trap: the legacy `reward_model.*`, `custom_reward_function.*` and
    `sandbox_fusion.*` keys still compose, but `main_ppo` ignores them, so a run set up that way trains
    against no reward model. The RM must be enabled at `reward.reward_model.*` and served by vLLM, no custom
    reward function may replace its score, the RM needs the raw chat (`data.return_raw_chat`), actor,
    reference and critic must all start from the SFT policy, a KL coefficient must be used, and checkpoints
    must be saved and resumed. With Megatron (`actor_rollout_ref.actor.strategy: megatron`) actor, reference and
    critic all use Megatron with the same tensor/pipeline parallel sizes, and these fit the policy: the tensor
    parallel size divides its attention and key-value heads, the pipeline parallel size its layers (Megatron-core
    refuses otherwise only once the model is built on the GPUs).
    """
    problems = []
    for section in LEGACY_SECTIONS:
        legacy = _set_leaves(cfg, section)
        if legacy:
            problems.append(f"legacy key(s) {', '.join(legacy)} are ignored by verl 0.9's main_ppo; "
                            "set the reward model at reward.reward_model.* instead")
    if _get(cfg, "reward.reward_model.enable") is not True:
        problems.append("reward.reward_model.enable is not true: verl would use a rule-based reward, not the RM")
    if not _same_path(_get(cfg, "reward.reward_model.model_path"), reward_model):
        problems.append(f"reward.reward_model.model_path is {_get(cfg, 'reward.reward_model.model_path')}, "
                        f"not the reward model {reward_model}")
    for key in ("reward.reward_model.rollout.name", "actor_rollout_ref.rollout.name"):
        if _get(cfg, key) != "vllm":
            problems.append(f"{key} is {_get(cfg, key)!r}, not vllm (the RM is served by vLLM's classify endpoint)")
    if _get(cfg, "reward.custom_reward_function.path") is not None:
        problems.append(f"reward.custom_reward_function.path ({_get(cfg, 'reward.custom_reward_function.path')}) "
                        "would replace the reward model's score")
    if _get(cfg, "data.return_raw_chat") is not True:
        problems.append("data.return_raw_chat must be true: the RM renders the raw chat with its own template")
    for key in ("actor_rollout_ref.model", "critic.model"):
        if not _same_path(_get(cfg, f"{key}.path"), policy):
            problems.append(f"{key}.path is {_get(cfg, f'{key}.path')}, not the SFT policy {policy}")
        tokenizer = _get(cfg, f"{key}.tokenizer_path")
        if tokenizer is not None and not _same_path(tokenizer, policy):
            problems.append(f"{key}.tokenizer_path is {tokenizer}, not the SFT policy {policy}")
    kl_on = _get(cfg, "algorithm.use_kl_in_reward") or _get(cfg, "actor_rollout_ref.actor.use_kl_loss")
    if not kl_on:
        problems.append("neither algorithm.use_kl_in_reward nor actor_rollout_ref.actor.use_kl_loss is on: "
                        "no KL to the reference")
    if (_get(cfg, "trainer.save_freq") or 0) < 1 or _get(cfg, "trainer.resume_mode") != "auto":
        problems.append("trainer.save_freq must be positive and trainer.resume_mode auto (checkpoints, resume)")
    if _get(cfg, "actor_rollout_ref.actor.strategy") == "megatron":
        problems += megatron_problems(cfg, policy)
    if problems:
        raise ValueError("verl config refused:\n- " + "\n- ".join(problems))


def megatron_problems(cfg, policy: str | Path) -> list[str]:
    """What in a composed Megatron config would not train `policy` (see `check_config`)."""
    problems = []
    roles = ("actor_rollout_ref.actor", "actor_rollout_ref.ref", "critic")
    for role in roles[1:]:
        if _get(cfg, f"{role}.strategy") != "megatron":
            problems.append(f"{role}.strategy is {_get(cfg, f'{role}.strategy')!r}, not megatron like the actor's")
    sizes = {}
    for theirs in MEGATRON_SIZES.values():
        values = {role: _get(cfg, f"{role}.megatron.{theirs}") for role in roles}
        if len(set(values.values())) != 1:
            problems.append(f"megatron.{theirs} differs between actor, reference and critic: {values}")
        sizes[theirs] = values[roles[0]]
    model = read_json(Path(policy) / "config.json")
    model = model.get("text_config", model)  # a multimodal config keeps the language model's shape there
    tp, pp = sizes["tensor_model_parallel_size"], sizes["pipeline_model_parallel_size"]
    heads = model.get("num_attention_heads")
    kv_heads = model.get("num_key_value_heads") or heads
    layers = model.get("num_hidden_layers")
    for what, count in (("attention heads", heads), ("key-value heads", kv_heads)):
        if isinstance(count, int) and isinstance(tp, int) and count % tp:
            problems.append(f"megatron tensor_model_parallel_size {tp} does not divide the policy's {count} {what} "
                            f"({policy}); lower rl.verl.megatron.tensor_parallel")
    if isinstance(layers, int) and isinstance(pp, int) and layers % pp:
        problems.append(f"megatron pipeline_model_parallel_size {pp} does not divide the policy's {layers} layers "
                        f"({policy}); change rl.verl.megatron.pipeline_parallel")
    return problems


def validate(cfg) -> None:
    """verl's own `validate_config` (batch sizes, micro batches, …), as `main_ppo` runs it first."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))


def check_servable(reward_model: str | Path) -> None:
    """Refuse an RM that verl cannot serve through vLLM's classify endpoint (one logit, RM's chat template).

    It must be a `*ForSequenceClassification` that transformers itself knows (not rmood's InfoRM or
    penalised-MRM classes), with `num_labels == 1` and a chat template. A `reward_bias` in its config.json
    (the exported MRM's b) is not applied by verl: a constant, which changes no PPO advantage.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    path = Path(reward_model)
    usable = f"the reward models verl can serve are {', '.join(servable_methods())}"
    if (path / "ensemble.json").is_file():
        raise ValueError(f"{path}: an ensemble cannot be served by verl (one model per PPO run); {usable}")
    config = read_json(path / "config.json")
    architectures = config.get("architectures") or []
    known = set(MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.values())
    if len(architectures) != 1 or architectures[0] not in known:
        raise ValueError(f"{path}: architecture {architectures} (model_type {config.get('model_type')!r}) is not a "
                         f"transformers *ForSequenceClassification that vLLM can load (InfoRM and the penalised "
                         f"MRM are rmood's own classes); {usable}")
    labels = config.get("num_labels", len(config.get("id2label") or {}) or 2)  # transformers' default is 2
    if labels != 1:
        raise ValueError(f"{path}: a reward model has one output (num_labels 1), this one has {labels}")
    tokenizer_config = path / "tokenizer_config.json"
    if not tokenizer_config.is_file():
        raise ValueError(f"{path}: no tokenizer (tokenizer_config.json); verl renders with the RM's own tokenizer")
    if not (read_json(tokenizer_config).get("chat_template") or (path / "chat_template.jinja").is_file()
            or (path / "chat_template.json").is_file()):
        raise ValueError(f"{path}: no chat template; verl renders prompt + response with the RM's chat template")
    if config.get("reward_bias"):
        print(f"{path}: verl serves the logit without config.reward_bias ({config['reward_bias']}), "
              "a constant that changes no PPO advantage", flush=True)


def check_prompt_lengths(policy: str | Path, prompts: str | Path, max_prompt_length: int) -> None:
    """Refuse prompts longer than `max_prompt_length` tokens under the policy's chat template (verl fails mid-run)."""
    from transformers import AutoTokenizer

    from rmood.generation import encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(policy)
    for record in read_jsonl(prompts, required=("id", "messages")):
        length = len(encode_prompt(tokenizer, record["messages"]))
        if length > max_prompt_length:
            raise DataError(f"{prompts}: prompt {record['id']} has {length} tokens, more than "
                            f"rl.verl.max_prompt_length ({max_prompt_length})")


def run(command: list[str], what: str, cwd: str | Path | None = None) -> None:
    """Run a command (list arguments, no shell), its output going to ours; a non-zero exit is an error."""
    print("+ " + " ".join(command), flush=True)
    status = subprocess.run(command, cwd=cwd, check=False).returncode
    if status != 0:
        raise RuntimeError(f"{what} failed (exit status {status}); its output is above")


def use_policy_tokenizer(model_dir: Path, policy: str | Path) -> None:
    """Give `model_dir` exactly the policy's tokenizer files (chat template included) and its generation config."""
    for name in TOKENIZER_FILES:
        (model_dir / name).unlink(missing_ok=True)
        if (Path(policy) / name).is_file():
            shutil.copy2(Path(policy) / name, model_dir / name)
    if not (model_dir / "generation_config.json").is_file() and (Path(policy) / "generation_config.json").is_file():
        shutil.copy2(Path(policy) / "generation_config.json", model_dir / "generation_config.json")


def check_causal_lm(model_dir: Path, policy: str | Path) -> None:
    """Refuse a merged folder that is not a causal LM with weights and the policy's tokenizer and chat template."""
    from transformers import AutoConfig, AutoTokenizer

    architectures = AutoConfig.from_pretrained(model_dir).architectures or []
    if not architectures or not architectures[0].endswith("ForCausalLM"):
        raise ValueError(f"{model_dir}: merged model is {architectures}, not a causal LM")
    if not any(model_dir.glob("*.safetensors")):
        raise ValueError(f"{model_dir}: the merger wrote no safetensors weights")
    merged, original = AutoTokenizer.from_pretrained(model_dir), AutoTokenizer.from_pretrained(policy)
    if not merged.chat_template or merged.chat_template != original.chat_template:
        raise ValueError(f"{model_dir}: chat template differs from the policy's ({policy})")


def checkpoint_backend(actor_dir: Path) -> str:
    """How verl saved the actor checkpoint in `actor_dir`: `fsdp`, `megatron` (Megatron shards, merged by verl's
    model merger) or `megatron-hf` (Megatron run whose model was saved as Hugging Face weights through the bridge,
    verl's default: nothing to merge). Refuses an incomplete or unknown folder."""
    if (actor_dir / "fsdp_config.json").is_file():
        return "fsdp"
    manifest = actor_dir / MEGATRON_MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{actor_dir}: no complete verl checkpoint (neither FSDP's fsdp_config.json nor "
                                f"Megatron's {MEGATRON_MANIFEST}, which verl writes last)")
    model = (read_json(manifest).get("contents") or {}).get("model") or {}
    formats = {"megatron_dist_checkpoint": "megatron", "huggingface": "megatron-hf"}
    if model.get("format") not in formats:
        raise ValueError(f"{manifest}: the actor's model was saved as {model.get('format')!r}, not one of "
                         f"{', '.join(formats)} (was 'model' left out of checkpoint.save_contents?)")
    return formats[model["format"]]


def merge_command(actor_dir: Path, target: Path, backend: str, policy: str | Path) -> list[str]:
    """verl's model merger on `actor_dir` for `backend` (fsdp, megatron), writing to `target`."""
    command = [sys.executable, "-m", "verl.model_merger", "merge", "--backend", backend,
               "--local_dir", str(actor_dir), "--target_dir", str(target)]
    if backend == "megatron" and read_json(Path(policy) / "config.json").get("tie_word_embeddings"):
        command.append("--tie-word-embedding")
    return command


def merge_checkpoint(actor_dir: str | Path, target: str | Path, policy: str | Path) -> None:
    """Turn verl's actor checkpoint into a Hugging Face causal LM at `target`, atomically.

    The backend is read from the folder (`checkpoint_backend`): FSDP shards and Megatron shards
    (`model/dist_ckpt`) go through `python -m verl.model_merger merge --backend fsdp|megatron` (bf16); the
    Hugging Face weights of a Megatron checkpoint saved through the bridge (`model/huggingface`) are copied.
    The merged folder gets the policy's tokenizer and chat template.
    """
    actor_dir = Path(actor_dir)
    backend = checkpoint_backend(actor_dir)
    hf_dir = actor_dir / "model" / "huggingface"
    if backend == "megatron" and not (hf_dir / "config.json").is_file():
        # the merger reads the model's shape from model/huggingface, which verl fills only when it saves HF weights
        hf_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(policy) / "config.json", hf_dir / "config.json")
        use_policy_tokenizer(hf_dir, policy)
    with atomic_dir(target) as tmp:
        if backend == "megatron-hf":
            for path in hf_dir.iterdir():
                if path.is_file():
                    shutil.copy2(path, tmp / path.name)
        else:
            run(merge_command(actor_dir, tmp, backend, policy), f"verl's model merger on {actor_dir}")
        use_policy_tokenizer(tmp, policy)
        for path in tmp.iterdir():
            path.chmod(0o666 & ~UMASK)  # the merger writes its weights 0600
        check_causal_lm(tmp, policy)


def latest_step(work_dir: Path) -> int:
    """The last update verl checkpointed in `work_dir` (0 if none)."""
    tracker = work_dir / "latest_checkpointed_iteration.txt"
    return int(tracker.read_text().strip() or 0) if tracker.is_file() else 0


def write_config(cfg, path: Path) -> None:
    """The composed verl config as YAML (interpolations resolved where they can be)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        text = OmegaConf.to_yaml(cfg, resolve=True)
    except OmegaConfBaseException:  # an interpolation that only resolves at run time (e.g. an unset env var)
        text = OmegaConf.to_yaml(cfg)
    with atomic_open(path) as f:
        f.write(text)


def train_ppo_verl(
    policy: str,
    reward_model: str,
    prompts: str,
    out: list[str],
    work_dir: str,
    seed: int,
    rl: dict[str, Any],
    sampling: dict[str, Any],
    tuning: str | None = None,
) -> None:
    """Optimise `policy` against `reward_model` with verl's PPO for `rl.steps` updates; save to the `out` dirs.

    `out` are the ppo/<rm>/step_<k>/model folders, as for `rmood.rl.ppo.train_ppo`. verl checkpoints into
    `work_dir` (beside `config.yaml`, the composed config, and the prompts parquet); a killed run resumes from
    its last checkpoint when rerun with the same settings and inputs (other settings start afresh), and the
    checkpoints are deleted once every policy is merged. If every `out` dir exists nothing happens.
    `rl.learning_rate: tuned` takes the rate from the `tuning` file (`rmood.rl.tuning`).
    """
    rl = resolve(rl, tuning)
    targets = checkpoint_dirs(out, rl["steps"], rl["checkpoints"])
    if all((path / "config.json").is_file() for path in targets.values()):
        print(f"every PPO checkpoint of {reward_model} exists; nothing to do", flush=True)
        return
    check_servable(reward_model)
    work = Path(work_dir).resolve()
    name = f"ppo-{Path(out[0]).resolve().parents[1].name}"
    override_list = overrides(policy, reward_model, work / PARQUET, work, seed, rl, sampling, name)
    prepare_checkpoints(work, fingerprint({"overrides": override_list}, [policy, reward_model, prompts]))
    count = write_parquet(prompts, work / PARQUET)
    if count < rl["batch_size"]:
        raise DataError(f"{prompts}: {count} prompts, fewer than one PPO batch ({rl['batch_size']})")
    check_prompt_lengths(policy, prompts, rl["verl"]["max_prompt_length"])
    config_name = CONFIG_NAMES[rl["verl"]["strategy"]]
    cfg = compose(override_list, config_name)
    check_config(cfg, reward_model, policy)
    validate(cfg)
    write_config(cfg, work / "config.yaml")
    if latest_step(work) < rl["steps"]:
        hydra = [f"hydra.run.dir={quote(work / 'hydra')}", "hydra.output_subdir=null", "hydra.job.chdir=false"]
        run(launch_command(config_name, override_list, hydra), "verl's PPO trainer", cwd=work)
    for step, target in targets.items():
        if not (target / "config.json").is_file():
            merge_checkpoint(work / f"global_step_{step}" / "actor", target, policy)
    drop_checkpoints(work)


def launch_command(config_name: str, override_list: list[str], hydra: list[str]) -> list[str]:
    """`python -m verl.trainer.main_ppo` on verl's `config_name` (its default, ppo_trainer, needs no flag)."""
    name = [] if config_name == ROOT_CONFIG else ["--config-name", config_name]
    return [sys.executable, "-m", "verl.trainer.main_ppo", *name, *override_list, *hydra]


def drop_checkpoints(work_dir: Path) -> None:
    """Delete verl's checkpoints once every policy is merged (FSDP or Megatron shards with optimizer states: large).

    `config.yaml`, the prompts parquet and the fingerprint stay.
    """
    for checkpoint in work_dir.glob("global_step_*"):
        shutil.rmtree(checkpoint)
    (work_dir / "latest_checkpointed_iteration.txt").unlink(missing_ok=True)
