"""InfoRM: the KL term, the stochastic head, last-non-pad pooling, Auto-class loading and training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from rmood.io import write_jsonl
from test_models import conversations

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(autouse=True, scope="module")
def registered() -> None:
    """rmood's model classes registered with the Auto classes, as the steps that load models do it."""
    from rmood.rm.auto import register_models

    register_models()

LATENT = 8
TRAINER = dict(
    epochs=1, learning_rate=1e-2, batch_size=4, gradient_accumulation_steps=1,
    lr_scheduler_type="constant", warmup_ratio=0.0, max_length=128, save_steps=100,
)


@pytest.fixture(scope="module")
def inform_dir(tiny_base, tmp_path_factory) -> Path:
    """An untrained InfoRM on the tiny base, saved."""
    from rmood.rm.inform import inform_from_policy

    model, tokenizer = inform_from_policy(str(tiny_base), LATENT, 0, "float32")
    out = tmp_path_factory.mktemp("inform") / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_kl_to_standard_normal_matches_the_closed_form():
    from rmood.rm.inform_trainer import kl_to_standard_normal

    assert torch.equal(kl_to_standard_normal(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))
    mu, logvar = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, float(np.log(2.0))]])
    expected = 0.5 * ((1 + 1 - 1 - 0) + (4 + 2 - 1 - np.log(2.0)))
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), torch.tensor([expected], dtype=torch.float32))


def test_head_samples_in_training_and_uses_the_mean_in_eval():
    from rmood.rm.inform import InfoRMConfig, InfoRMHead

    torch.manual_seed(0)
    head = InfoRMHead(InfoRMConfig(hidden_size=16, latent_dim=LATENT))
    hidden = torch.randn(3, 5, 16)
    assert head(hidden).shape == (3, 5, 1)
    head.train()
    assert not torch.equal(head(hidden), head(hidden))
    head.eval()
    mu, _ = head.encode(hidden)
    torch.testing.assert_close(head(hidden), head.reward_head(mu))
    assert torch.equal(head(hidden), head(hidden))


def right_padded(tokenizer, convs, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    from rmood.rm.score import right_pad, tokenize

    sequences = tokenize(tokenizer, convs)
    ids, mask = right_pad(sequences, pad_id, "cpu")
    return ids, mask, [len(s) for s in sequences]


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_pooling_takes_the_last_non_pad_token(inform_dir, prompt_data, pad_is_eos):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(inform_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(inform_dir)
    if pad_is_eos:
        model.config.pad_token_id = tokenizer.eos_token_id
    ids, mask, lengths = right_padded(tokenizer, conversations(prompt_data["preference"], 8), model.config.pad_token_id)
    assert len(set(lengths)) > 1 and (ids == tokenizer.eos_token_id).any()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        per_token = model.score(hidden)  # what TRL's PPO does: the head on every position
        alone = torch.cat([model(input_ids=ids[i : i + 1, :n]).logits for i, n in enumerate(lengths)])
    last = torch.tensor(lengths) - 1
    rows = torch.arange(len(lengths))
    assert out.logits.shape == (len(lengths), 1) and out.mu.shape == out.logvar.shape == (len(lengths), LATENT)
    torch.testing.assert_close(out.logits, per_token[rows, last])
    torch.testing.assert_close(out.mu, model.score.encode(hidden[rows, last])[0])
    torch.testing.assert_close(out.logits, alone, rtol=1e-4, atol=1e-5)


def test_saved_inform_loads_with_the_auto_class(inform_dir, tiny_base, prompt_data):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from rmood.rm.inform import InfoRMForSequenceClassification

    config = json.loads((inform_dir / "config.json").read_text())
    assert config["architectures"] == ["InfoRMForSequenceClassification"] and config["model_type"] == "rmood_inform"
    assert config["latent_dim"] == LATENT
    assert (inform_dir / "model.safetensors").is_file()
    assert not [p for p in inform_dir.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]

    model = AutoModelForSequenceClassification.from_pretrained(inform_dir).eval()
    assert isinstance(model, InfoRMForSequenceClassification) and model.config.num_labels == 1
    policy = AutoModelForCausalLM.from_pretrained(tiny_base)
    backbone = policy.model.state_dict()
    assert model.model.state_dict().keys() == backbone.keys()
    assert all(torch.equal(t, backbone[k]) for k, t in model.model.state_dict().items())

    tokenizer = AutoTokenizer.from_pretrained(inform_dir)
    ids, mask, _ = right_padded(tokenizer, conversations(prompt_data["preference"], 8), model.config.pad_token_id)
    again = AutoModelForSequenceClassification.from_pretrained(inform_dir).eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, again(input_ids=ids, attention_mask=mask).logits)


def test_inform_from_policy_is_seeded_and_refuses_other_or_incomplete_backbones(tiny_base, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from rmood.rm.inform import inform_from_policy

    first, _ = inform_from_policy(str(tiny_base), LATENT, 3, "float32")
    second, tokenizer = inform_from_policy(str(tiny_base), LATENT, 3, "float32")
    assert torch.equal(first.score.encode_head.weight, second.score.encode_head.weight)
    assert first.score.encode_head.weight.std() > 0 and first.config.pad_token_id == tokenizer.pad_token_id
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    llama.save_pretrained(tmp_path / "llama")
    with pytest.raises(ValueError, match="Qwen3 backbone"):
        inform_from_policy(str(tmp_path / "llama"), LATENT, 0, "float32")
    shutil.copytree(tiny_base, tmp_path / "broken")
    weights = load_file(tmp_path / "broken" / "model.safetensors")
    del weights["model.norm.weight"]
    save_file(weights, tmp_path / "broken" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"did not load fully \(missing \['model.norm.weight'\]"):
        inform_from_policy(str(tmp_path / "broken"), LATENT, 0, "float32")


def test_loss_adds_beta_times_the_kl_of_chosen_and_rejected(inform_dir, prompt_data, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig

    from rmood.rm.inform_trainer import InfoRMTrainer, kl_to_standard_normal

    model = AutoModelForSequenceClassification.from_pretrained(inform_dir)
    tokenizer = AutoTokenizer.from_pretrained(inform_dir)
    convs = conversations(prompt_data["preference"], 8)
    pairs = Dataset.from_list([{"chosen": convs[i], "rejected": convs[i + 1]} for i in range(0, 8, 2)])
    args = RewardConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, report_to="none", use_cpu=True)
    trainer = InfoRMTrainer(model=model, args=args, train_dataset=pairs, processing_class=tokenizer, beta=2.0)
    batch = next(iter(trainer.get_train_dataloader()))
    model.eval()  # z = μ: the same rewards in every call
    with torch.no_grad():
        loss, outputs = trainer.compute_loss(model, dict(batch), return_outputs=True)
        trainer.beta = 0.0
        plain = trainer.compute_loss(model, dict(batch))
    kl_chosen, kl_rejected = kl_to_standard_normal(outputs.mu, outputs.logvar).chunk(2)
    kl = (kl_chosen + kl_rejected).mean()
    assert kl > 0
    torch.testing.assert_close(loss - plain, 2.0 * kl)
    torch.testing.assert_close(torch.tensor(trainer._metrics["eval"]["kl"][0]), kl)
    assert {"accuracy", "margin"} <= set(trainer._metrics["eval"])


def test_train_inform_saves_a_scorable_model_and_logs_the_kl(tiny_base, prompt_data, tmp_path, monkeypatch):
    from rmood.rm.inform_trainer import InfoRMTrainer, train_inform
    from rmood.rm.score import load_reward_model, score_conversations

    logs: list[dict[str, float]] = []
    log = InfoRMTrainer.log

    def record(self, entry: dict[str, float], *args) -> None:
        log(self, entry, *args)  # adds the trainer's metrics to `entry`
        logs.append(entry)

    monkeypatch.setattr(InfoRMTrainer, "log", record)
    convs = conversations(prompt_data["preference"], 16)
    write_jsonl(tmp_path / "pairs.jsonl", [{"chosen": convs[i], "rejected": convs[i + 1]} for i in range(0, 16, 2)])
    final = {}
    for beta in (0.0, 100.0):
        out = tmp_path / f"beta{beta}"
        train_inform(str(tiny_base), str(tmp_path / "pairs.jsonl"), str(out), str(tmp_path / "work"), 0, TRAINER,
                     {"latent_dim": LATENT, "beta": beta}, "float32")
        final[beta] = logs[-1]
        assert {"train_loss", "accuracy", "margin", "kl"} <= set(final[beta])
    # Same seed and data: the Bradley–Terry part stays near the β = 0 loss, β·KL comes on top.
    assert final[0.0]["kl"] > 0.01
    preference_part = final[100.0]["train_loss"] - 100.0 * final[100.0]["kl"]
    assert abs(preference_part - final[0.0]["train_loss"]) < 0.05
    assert (out / "model.safetensors").is_file() and not (tmp_path / "work").exists()
    rewards = score_conversations(*load_reward_model(out), convs, 4)
    assert rewards.shape == (16,) and np.isfinite(rewards).all() and np.unique(rewards.round(6)).size > 1


def test_load_reward_model_registers_inform_and_parsing_stays_light(inform_dir):
    code = (
        "import sys\n"
        "import rmood, rmood.steps, rmood.cli, rmood.config\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
        "from rmood.rm.score import load_reward_model\n"
        f"model, _ = load_reward_model({str(inform_dir)!r})\n"
        "assert type(model).__name__ == 'InfoRMForSequenceClassification', type(model)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
