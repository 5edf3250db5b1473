"""PPO with TRL against plain and custom reward models, its checkpoints, resume bookkeeping and refusals. (A PPO run
killed with SIGKILL and resumed: tests/test_faults.py; the KL of its checkpoints: tests/test_kl.py.)"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

from rmood.io import read_jsonl
from test_models import save_reward_model

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

RL = dict(steps=4, checkpoints=[2], batch_size=4, mini_batches=2, ppo_epochs=1, learning_rate=1e-2, kl_coef=0.05,
          response_length=8, missing_eos_penalty=None)
SAMPLING = dict(backend="hf", n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, batch_size=8, shards=1)


def run_ppo(policy: Path, reward_model: Path, prompts: Path, folder: Path, logging: dict | None = None,
            log_dir: Path | None = None, **settings) -> list[str]:
    """PPO with RL (updated by `settings`) into folder/step_<k>/model; returns those dirs."""
    from rmood.rl.ppo import checkpoint_steps, train_ppo

    rl = {**RL, **settings}
    out = [str(folder / f"step_{k}" / "model") for k in checkpoint_steps(rl["steps"], rl["checkpoints"])]
    train_ppo(str(policy), str(reward_model), str(prompts), out, str(folder / "work"), 0, rl, {"temperature": 1.0},
              "float32", logging=logging, log_dir=None if log_dir is None else str(log_dir))
    return out


def state_dict(path) -> dict:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).state_dict()


@pytest.fixture(scope="module")
def plain_rm(tiny_base, tmp_path_factory) -> Path:
    return save_reward_model(tiny_base, tmp_path_factory.mktemp("rl") / "rm")


@pytest.fixture(scope="module")
def inform_rm(tiny_base, tmp_path_factory) -> Path:
    from rmood.rm.inform import inform_from_policy

    model, tokenizer = inform_from_policy(str(tiny_base), 8, 0, "float32")
    out = tmp_path_factory.mktemp("rl") / "inform"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def ppo_run(tiny_base, plain_rm, prompt_data, tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("ppo")
    return folder, run_ppo(tiny_base, plain_rm, prompt_data["preference"], folder)


def test_checkpoint_steps_and_out_lists():
    from rmood.rl.ppo import checkpoint_dirs, checkpoint_steps

    assert checkpoint_steps(120, [20, 5, 10, 40, 80]) == [5, 10, 20, 40, 80, 120]  # the last update is always saved
    assert checkpoint_steps(40, [10, 40]) == [10, 40]
    for wrong_list in ([0, 10], [50]):
        with pytest.raises(ValueError, match="must lie in 1"):
            checkpoint_steps(40, wrong_list)
    assert checkpoint_dirs(["r/step_4/model", "r/step_2/model"], 4, [2]) == {
        2: Path("r/step_2/model"), 4: Path("r/step_4/model")
    }
    wrong = {
        "saves updates": ["r/step_2/model"],
        "outputs are for": ["r/step_2/model", "r/step_3/model", "r/step_4/model"],
        "listed twice": ["r/step_2/model", "s/step_2/model", "r/step_4/model"],
        "step_<k>/model": ["r/step_2/model", "r/4/model"],
    }
    for message, out in wrong.items():
        with pytest.raises(ValueError, match=message):
            checkpoint_dirs(out, 4, [2])


def test_prompt_batches_are_seeded_epochs_that_restart_anywhere():
    from rmood.rl.engine import PromptBatches

    dataset = [{"input_ids": [i]} for i in range(10)]
    collate = lambda rows: [row["input_ids"][0] for row in rows]  # noqa: E731
    first = list(itertools.islice(PromptBatches(dataset, 4, 0, collate), 6))  # 2 batches an epoch, 2 prompts left out
    for epoch in range(3):
        assert len(set(first[2 * epoch] + first[2 * epoch + 1])) == 8  # no prompt twice in an epoch
    assert first[:2] != first[2:4]  # a fresh order every epoch
    assert list(itertools.islice(PromptBatches(dataset, 4, 0, collate, start=3), 3)) == first[3:]
    assert list(itertools.islice(PromptBatches(dataset, 4, 1, collate), 2)) != first[:2]


def test_optimizer_and_rng_states_round_trip_without_pickle(tmp_path):
    import random

    from rmood.training import load_optimizer, load_rng, save_optimizer, save_rng

    def optimizer():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        return model, torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))

    model, adam = optimizer()
    model(torch.ones(1, 3)).sum().backward()
    adam.step()
    save_optimizer(adam, tmp_path / "optimizer.safetensors")
    _, fresh = optimizer()
    load_optimizer(fresh, tmp_path / "optimizer.safetensors")
    saved, loaded = adam.state_dict(), fresh.state_dict()
    assert loaded["param_groups"] == saved["param_groups"] and loaded["param_groups"][0]["betas"] == (0.8, 0.9)
    assert all(torch.equal(loaded["state"][i][k], v) for i in saved["state"] for k, v in saved["state"][i].items())

    np.random.normal()  # a cached Gaussian in NumPy's state
    save_rng(tmp_path / "rng.safetensors")
    draws = lambda: (random.random(), np.random.normal(), np.random.rand(), torch.rand(2).tolist())  # noqa: E731
    first = draws()
    load_rng(tmp_path / "rng.safetensors")
    assert draws() == first


def test_resume_point_restores_deleted_outputs_or_starts_over(tmp_path):
    from rmood.rl.ppo import resume_point

    work = tmp_path / "work"
    targets = {k: tmp_path / f"step_{k}" / "model" for k in (1, 2, 3)}
    assert resume_point(str(work), "digest", targets) == 0
    for k in (1, 2):
        (work / f"policy-{k}").mkdir()
        (work / f"policy-{k}" / "config.json").write_text("{}")
    (work / "checkpoint-2").mkdir()
    (work / "checkpoint-2" / "trainer_state.json").write_text('{"update": 2}')
    assert resume_point(str(work), "digest", targets) == 2
    assert [(path / "config.json").is_file() for path in targets.values()] == [True, True, False]
    shutil.rmtree(targets[1].parent)
    shutil.rmtree(work / "policy-1")
    assert resume_point(str(work), "digest", targets) == 0  # the policy of update 1 is gone: start over
    assert sorted(p.name for p in work.iterdir()) == ["fingerprint.json"]


def test_ppo_saves_the_declared_checkpoints_deterministically(tiny_base, plain_rm, prompt_data, ppo_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, out = ppo_run
    assert sorted(p.name for p in folder.iterdir()) == ["step_2", "step_4"]  # the work folder is gone
    base = state_dict(tiny_base)
    for path in out:
        assert type(AutoModelForCausalLM.from_pretrained(path)).__name__ == "Qwen3ForCausalLM"
        assert AutoTokenizer.from_pretrained(path).get_vocab() == AutoTokenizer.from_pretrained(tiny_base).get_vocab()
        trained = state_dict(path)
        assert any(not torch.equal(trained[name], base[name]) for name in base)
    again = run_ppo(tiny_base, plain_rm, prompt_data["preference"], tmp_path)
    for first, second in zip(out, again):
        assert all(torch.equal(a, b) for a, b in zip(state_dict(first).values(), state_dict(second).values()))


def test_ppo_logs_every_update_to_tensorboard_and_saves_the_same_checkpoints(tiny_base, plain_rm, prompt_data,
                                                                            ppo_run, tmp_path):
    from test_training_logs import scalars

    pytest.importorskip("tensorboard")
    _, out = ppo_run  # the same run without logging
    logs = tmp_path / "logs" / "rep0" / "ppo" / "rm"
    logged = run_ppo(tiny_base, plain_rm, prompt_data["preference"], tmp_path / "run",
                     logging={"report_to": ["tensorboard"]}, log_dir=logs)
    for first, second in zip(out, logged):
        assert (Path(first) / "model.safetensors").read_bytes() == (Path(second) / "model.safetensors").read_bytes()
    values = scalars(logs)
    for tag in ("train/objective/kl", "train/objective/scores", "train/loss/policy_avg", "train/loss/value_avg",
                "train/lr"):
        assert [step for step, _ in values[tag]] == [1, 2, 3, 4], tag  # one point per update (RL["steps"])
    assert not list((tmp_path / "run").rglob("events.out.tfevents.*"))


def test_ppo_does_nothing_when_every_checkpoint_exists(tiny_base, plain_rm, prompt_data, ppo_run):
    folder, out = ppo_run
    stamps = [(Path(p) / "model.safetensors").stat().st_mtime_ns for p in out]
    run_ppo(tiny_base, plain_rm, prompt_data["preference"], folder)
    assert [(Path(p) / "model.safetensors").stat().st_mtime_ns for p in out] == stamps
    assert not (folder / "work").exists()


def test_ppo_against_an_inform_rm(tiny_base, inform_rm, prompt_data, tmp_path):
    out = run_ppo(tiny_base, inform_rm, prompt_data["preference"], tmp_path, steps=2, checkpoints=[1])
    base = state_dict(tiny_base)
    for path in out:
        trained = state_dict(path)
        assert any(not torch.equal(trained[name], base[name]) for name in base)


def test_ppo_raises_the_reward_it_optimises(tiny_base, plain_rm, prompt_data, tmp_path, one_thread):
    """The proxy reward of fresh samples to held-out prompts rises from the SFT policy (step 0) to the last checkpoint;
    a reward whose sign PPO got wrong would make it fall. The RM's random head is scaled so that its reward, not the
    KL penalty, dominates PPO's objective, with the sign in which eight updates move it far."""
    from transformers import AutoModelForSequenceClassification

    from rmood.generation import sample_shard
    from rmood.rm.score import score_samples

    rm = shutil.copytree(plain_rm, tmp_path / "rm")
    sharp = AutoModelForSequenceClassification.from_pretrained(rm)
    with torch.no_grad():
        sharp.score.weight.mul_(-100)
    sharp.save_pretrained(rm)
    [last] = run_ppo(tiny_base, rm, prompt_data["preference"], tmp_path / "ppo", steps=8, checkpoints=[8], batch_size=16,
                     ppo_epochs=4, learning_rate=0.1)
    prompts = [str(prompt_data["ood"])]
    rewards = {}
    for name, policy in (("step_0", tiny_base), ("last", last)):
        samples, proxy = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.proxy.jsonl"
        sample_shard(str(policy), prompts, str(samples), 0, 1, {**SAMPLING, "n": 64}, "float32")
        score_samples(str(rm), str(samples), prompts, str(proxy), {"batch_size": 64}, "float32")
        rewards[name] = np.array([r["reward"] for r in read_jsonl(proxy)])
    gain = rewards["last"].mean() - rewards["step_0"].mean()
    standard_error = np.sqrt(sum(r.var(ddof=1) / r.size for r in rewards.values()))
    print(f"proxy reward: step 0 {rewards['step_0'].mean():.4f}, last {rewards['last'].mean():.4f}, "
          f"gain {gain:.4f} = {gain / standard_error:.1f} standard errors")
    assert gain > 4 * standard_error


def test_value_model_is_the_policy_with_a_seeded_head(tiny_base):
    """Every PPO run's value model: the SFT policy's backbone and a fresh scalar head, the same for a seed."""
    from transformers import AutoModelForCausalLM

    from rmood.rl.engine import value_model

    value = value_model(str(tiny_base), 0, "float32")
    policy = AutoModelForCausalLM.from_pretrained(tiny_base).model.state_dict()
    assert type(value).__name__ == "Qwen3ForSequenceClassification" and value.score.weight.shape == (1, 32)
    assert all(torch.equal(p, policy[name]) for name, p in value.model.state_dict().items())
    assert torch.equal(value_model(str(tiny_base), 0, "float32").score.weight, value.score.weight)
    assert not torch.equal(value_model(str(tiny_base), 1, "float32").score.weight, value.score.weight)


def test_rendered_reward_is_rmood_scoring(tiny_base, inform_rm, prompt_data):
    """TRL's get_reward on the wrapped RM gives what rmood's scoring gives the decoded conversations."""
    from transformers import AutoTokenizer
    from trl.experimental.utils import get_reward

    from rmood.generation import encode_prompt
    from rmood.data.prompts import conversation
    from rmood.rl.engine import RenderedReward
    from rmood.rm.score import load_reward_model, score_conversations

    rm, rm_tokenizer = load_reward_model(inform_rm)
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    records = read_jsonl(prompt_data["preference"])[:4]
    prompts = [encode_prompt(tokenizer, r["messages"]) for r in records]
    texts = ["1 2 3", "abc", "", "x y"]
    finished = [True, False, True, True]
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    responses = [tokenizer(t, add_special_tokens=False)["input_ids"] + [eos] * f for t, f in zip(texts, finished)]
    width, length = max(map(len, prompts)), max(map(len, responses)) + 2
    rows = [[pad] * (width - len(p)) + p + r + [pad] * (length - len(r)) for p, r in zip(prompts, responses)]
    wrapper = RenderedReward(rm, rm_tokenizer, tokenizer, {tuple(p): r for p, r in zip(prompts, records)})
    _, rewards, _ = get_reward(wrapper, torch.tensor(rows), pad, width)
    expected = score_conversations(rm, rm_tokenizer, [conversation(r, t) for r, t in zip(records, texts)], 4)
    np.testing.assert_allclose(rewards.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_ppo_refusals(tiny_base, plain_rm, prompt_data, tmp_path):
    from transformers import AutoTokenizer

    from rmood.rm.ensemble import make_ensemble
    from rmood.rm.score import ModelError

    prompts = prompt_data["preference"]
    make_ensemble([str(plain_rm), str(plain_rm)], str(tmp_path / "ensemble"), "mean", 1.0)
    with pytest.raises(ModelError, match="ensemble"):
        run_ppo(tiny_base, tmp_path / "ensemble", prompts, tmp_path / "a")

    pad_is_eos = shutil.copytree(tiny_base, tmp_path / "pad_is_eos")
    tokenizer = AutoTokenizer.from_pretrained(pad_is_eos)
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(pad_is_eos)
    with pytest.raises(ModelError, match="pad token other than eos"):
        run_ppo(pad_is_eos, plain_rm, prompts, tmp_path / "c")

    with pytest.raises(ValueError, match="fewer than one PPO batch"):
        run_ppo(tiny_base, plain_rm, prompt_data["ood"], tmp_path / "d", batch_size=16)
    assert not any((tmp_path / name).exists() for name in "acd")


def dry_run_ppo(folder: Path, overlay: str) -> str:
    """The dry run's output for replicate 0's `rm` PPO curve with `overlay` (YAML) merged over the default."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    (folder / "rl.yaml").write_text(overlay)
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(root / "Snakefile"), "-n",
                             "--configfile", str(folder / "rl.yaml"), "--", "results/embedded/rep0/ppo/rm/curve.json"],
                            cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_ppo_rule_declares_every_checkpoint_the_engine_saves(tmp_path):
    """The last update is saved even when rl.checkpoints does not list it, and the rule must list it; the default
    learning rate is tuned on seed 1000 first."""
    out = dry_run_ppo(tmp_path, "rl: {steps: 5, checkpoints: [2, 4]}\n")
    outputs = [f"results/embedded/rep0/ppo/rm/step_{k}/model" for k in (2, 4, 5)]
    assert f"output: {', '.join(outputs)}\n" in out
    assert ("input: results/embedded/rep1000/ppo/sft/step_0/samples.jsonl, "  # the tuning rule reads the tuning runs'
            "results/embedded/rep1000/ppo/tune_lr0.0001/step_2/samples.jsonl" in out)  # samples and KL, not curves
    assert "results/embedded/rep1000/ppo/tune_lr0.0005/step_5/kl.jsonl\n" in out
    assert "output: results/embedded/tuning/ppo.json" in out


def test_a_fixed_learning_rate_runs_no_tuning(tmp_path):
    out = dry_run_ppo(tmp_path, "rl: {learning_rate: 5.0e-4}\n")
    assert "rule ppo:" in out and "tuning" not in out and "rep1000" not in out


def test_ppo_eval_refuses_outputs_that_are_not_one_per_checkpoint(tmp_path):
    from rmood.rl.evaluate import checkpoint_of, evaluate_run

    assert checkpoint_of("r/ppo/rm/step_20/model") == "step_20" and checkpoint_of("r/step_0/proxy.jsonl") == "step_0"
    policies = [f"r/step_{k}/model" for k in (2, 4)]
    files = {kind: [f"r/step_{k}/{kind}.jsonl" for k in (2, 4)] for kind in ("samples", "gold", "kl")}
    proxy = [f"r/step_{k}/proxy.jsonl" for k in (0, 2, 4)]
    settings = dict(reference="ref", reward_model="rm", step0_samples="s/step_0/samples.jsonl", prompt_files=["p"],
                    seed=0, sampling={}, gold={}, judge={}, scoring={}, dtype="float32")
    with pytest.raises(ValueError, match=r"the samples outputs are not one per checkpoint of \['step_2', 'step_4'\]"):
        evaluate_run(policies, samples=files["samples"][::-1], gold_labels=files["gold"], proxy=proxy, kl=files["kl"],
                     **settings)
    with pytest.raises(ValueError, match="the proxy outputs are not one per checkpoint"):
        evaluate_run(policies, samples=files["samples"], gold_labels=files["gold"], proxy=proxy[1:], kl=files["kl"],
                     **settings)
    with pytest.raises(ValueError, match="not for the step-0 samples"):
        evaluate_run(policies, samples=files["samples"], gold_labels=files["gold"], proxy=[proxy[1], *proxy[1:]],
                     kl=files["kl"], **settings)
    with pytest.raises(ValueError, match="not inside a step_<k> folder"):
        checkpoint_of("r/model")
    assert not (tmp_path / "r").exists()
