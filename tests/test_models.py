"""The model-facing steps on a tiny Qwen3: tokenizer, scoring, sampling resume, SFT and RM training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rmood.io import read_jsonl

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TRAINER = dict(
    epochs=1, learning_rate=1e-3, batch_size=4, gradient_accumulation_steps=1,
    lr_scheduler_type="cosine", warmup_ratio=0.0, max_length=128, save_steps=2,
)


def conversations(prompt_file: Path, n: int = 10) -> list[list[dict[str, str]]]:
    records = read_jsonl(prompt_file)[:n]
    return [[*r["messages"], {"role": "assistant", "content": r["reference"] * (1 + i % 3)}] for i, r in enumerate(records)]


def save_reward_model(base: Path, out: Path, pad_is_eos: bool = False) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if pad_is_eos:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_tiny_tokenizer_and_template(tiny_base):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.eos_token == "<|im_end|>"
    conv = [{"role": "user", "content": "sort 3 1"}, {"role": "assistant", "content": "1 3"}]
    text = tokenizer.apply_chat_template(conv, tokenize=False)
    assert text == "<|im_start|>user\nsort 3 1<|im_end|>\n<|im_start|>assistant\n1 3<|im_end|>\n"
    encoded = tokenizer.apply_chat_template(conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m]
    assert tokenizer.decode(masked) == "1 3<|im_end|>"
    config = json.loads((tiny_base / "config.json").read_text())
    assert config["model_type"] == "qwen3" and config["pad_token_id"] == tokenizer.pad_token_id


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_batched_scores_equal_one_by_one(tiny_base, prompt_data, tmp_path, pad_is_eos):
    from rmood.rm.score import load_reward_model, score_conversations

    model, tokenizer = load_reward_model(save_reward_model(tiny_base, tmp_path / "rm", pad_is_eos))
    convs = conversations(prompt_data["preference"])
    batched = score_conversations(model, tokenizer, convs, batch_size=4)
    single = np.array([score_conversations(model, tokenizer, [c], batch_size=1)[0] for c in convs])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)
    assert np.unique(batched.round(6)).size > 1


def test_scoring_refuses_conversations_that_end_with_pad(tiny_base, prompt_data, tmp_path):
    from rmood.rm.score import ModelError, load_reward_model, score_conversations, tokenize

    model, tokenizer = load_reward_model(save_reward_model(tiny_base, tmp_path / "rm"))
    last = tokenize(tokenizer, conversations(prompt_data["preference"], 1))[0][-1]
    model.config.pad_token_id = last
    with pytest.raises(ModelError, match="end with the pad token"):
        score_conversations(model, tokenizer, conversations(prompt_data["preference"], 2), batch_size=2)


def test_load_reward_model_errors(tiny_base, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from rmood.rm.score import ModelError, load_reward_model

    with pytest.raises(ModelError, match="not a model directory"):
        load_reward_model(tmp_path)
    AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=3).save_pretrained(tmp_path / "multi")
    with pytest.raises(ModelError, match="scalar head"):
        load_reward_model(tmp_path / "multi")
    (tmp_path / "weightless").mkdir()
    (tmp_path / "weightless" / "config.json").write_text((tiny_base / "config.json").read_text())
    with pytest.raises(ModelError, match=r"weightless: not a loadable reward model \(OSError"):
        load_reward_model(tmp_path / "weightless")
    (tmp_path / "unknown").mkdir()
    (tmp_path / "unknown" / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(ModelError, match=r"unknown: not a loadable reward model \(ValueError"):
        load_reward_model(tmp_path / "unknown")


def test_load_reward_model_refuses_a_tokenizer_without_chat_template(tiny_base, tmp_path):
    from rmood.rm.score import ModelError, load_reward_model

    rm = save_reward_model(tiny_base, tmp_path / "rm")
    (rm / "chat_template.jinja").unlink()
    with pytest.raises(ModelError, match=r"rm: the tokenizer has no chat template"):
        load_reward_model(rm)


def test_conversations_longer_than_the_context_keep_their_end(tiny_base, prompt_data, tmp_path, capsys):
    from rmood.mrm.representations import features
    from rmood.rm.score import load_reward_model, score_conversations, tokenize

    model, tokenizer = load_reward_model(save_reward_model(tiny_base, tmp_path / "rm"))
    convs = conversations(prompt_data["preference"], 6)
    lengths = list(map(len, tokenize(tokenizer, convs)))
    context = sorted(lengths)[2]
    assert max(lengths) > context  # some are longer than this context
    model.config.max_position_embeddings = context
    scores = score_conversations(model, tokenizer, convs, batch_size=4)
    assert f"{sum(n > context for n in lengths)} of 6 conversations are longer than the model's context of {context}" \
        in capsys.readouterr().out
    for score, ids in zip(scores, tokenize(tokenizer, convs)):
        with torch.no_grad():
            expected = model(input_ids=torch.tensor([ids[-context:]])).logits[0, 0].item()
        assert score == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert features(model, tokenizer, convs, batch_size=4).shape == (6, model.config.hidden_size)


SAMPLING = dict(backend="hf", n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, batch_size=3, shards=2)


def test_sampling_is_deterministic_and_resumes_after_a_kill(tiny_base, prompt_data, tmp_path):
    from rmood.generation import sample_shard

    files = [str(prompt_data["preference"])]
    full = tmp_path / "full.jsonl"
    sample_shard(str(tiny_base), files, str(full), 1, 0, SAMPLING, "float32")
    records = read_jsonl(full)
    assert len(records) == 12 * SAMPLING["n"]  # 24 prompts, every second one in shard 1
    assert all(isinstance(r["response"], str) and isinstance(r["finished"], bool) for r in records)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_base)
    eos = tokenizer.eos_token_id
    for r in records:  # the tokens as sampled: up to the first eos, or all max_new_tokens of an unfinished response
        assert r["tokens"].count(eos) == r["finished"] and (r["tokens"][-1] == eos) == r["finished"]
        assert r["finished"] or len(r["tokens"]) == SAMPLING["max_new_tokens"]
        assert r["response"] == tokenizer.decode(r["tokens"], skip_special_tokens=True)

    # A killed run: the first batch complete, the second cut mid-line.
    resumed = tmp_path / "resumed.jsonl"
    partial = resumed.with_name(resumed.name + ".partial")
    lines = full.read_text().splitlines(keepends=True)
    first_batch = SAMPLING["batch_size"] * SAMPLING["n"]
    partial.write_text("".join(lines[:first_batch]) + lines[first_batch][:10])
    sample_shard(str(tiny_base), files, str(resumed), 1, 0, SAMPLING, "float32")
    assert sorted(read_jsonl(resumed), key=json.dumps) == sorted(records, key=json.dumps)
    assert not partial.exists()


def test_reward_model_trains_saves_and_reloads(tiny_base, prompt_data, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from rmood.io import write_jsonl
    from rmood.rm.score import load_reward_model, score_conversations
    from rmood.rm.train import train_reward_model

    convs = conversations(prompt_data["preference"], 12)
    pairs = [{"chosen": convs[i], "rejected": convs[i + 1]} for i in range(0, 12, 2)]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    out = tmp_path / "rm"
    train_reward_model(str(tiny_base), str(tmp_path / "pairs.jsonl"), str(out), str(tmp_path / "work"), 0, TRAINER, "float32")
    assert (out / "model.safetensors").is_file() and not (tmp_path / "work").exists()
    plain = AutoModelForSequenceClassification.from_pretrained(out)  # no trust_remote_code
    assert type(plain).__name__ == "Qwen3ForSequenceClassification" and plain.config.num_labels == 1
    model, tokenizer = load_reward_model(out)
    first = score_conversations(model, tokenizer, convs, 4)
    model.save_pretrained(tmp_path / "again")
    tokenizer.save_pretrained(tmp_path / "again")
    second = score_conversations(*load_reward_model(tmp_path / "again"), convs, 4)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("lora", [False, True])
def test_sft_saves_a_plain_causal_lm(tiny_base, prompt_data, tmp_path, lora):
    from transformers import AutoModelForCausalLM

    from rmood.sft.train import train_sft

    settings = {**TRAINER, "chat_template_path": None, "lora": {"enabled": lora, "r": 4, "alpha": 8, "dropout": 0.0}}
    out = tmp_path / "sft"
    train_sft(str(tiny_base), str(prompt_data["sft"]), str(out), str(tmp_path / "work"), 0, settings, "float32")
    assert not list(out.glob("adapter_*"))
    tuned = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    changed = [n for n, p in tuned.state_dict().items() if not torch.equal(p, base.state_dict()[n])]
    assert changed  # training moved the weights (merged LoRA included)


def test_checkpoints_resume_only_with_the_same_fingerprint(tmp_path):
    from rmood.training import fingerprint, prepare_checkpoints

    data = tmp_path / "data.jsonl"
    data.write_text("{}\n")
    work = tmp_path / "work"
    digest = fingerprint({"lr": 1}, [data])
    assert prepare_checkpoints(work, digest) is None
    for step in (2, 10):
        (work / f"checkpoint-{step}").mkdir()
        (work / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (work / "checkpoint-12").mkdir()  # killed while saving: no trainer_state.json
    assert prepare_checkpoints(work, digest) == str(work / "checkpoint-10")
    assert prepare_checkpoints(work, fingerprint({"lr": 2}, [data])) is None
    assert not (work / "checkpoint-10").exists()


def test_gold_labels_and_proxy_scores_from_a_reward_model(tiny_base, prompt_data, tmp_path):
    from rmood.data.prompts import conversation
    from rmood.io import write_jsonl
    from rmood.labeling.gold import label_gold
    from rmood.rm.score import load_reward_model, score_conversations, score_samples

    gold_rm = save_reward_model(tiny_base, tmp_path / "gold_rm")
    prompts = read_jsonl(prompt_data["preference"])[:5]
    samples = [{"prompt_id": p["id"], "sample": k, "response": p["reference"] * (k + 1), "finished": True}
               for p in prompts for k in range(2)]
    write_jsonl(tmp_path / "samples.jsonl", samples)
    label_gold(str(tmp_path / "samples.jsonl"), [str(prompt_data["preference"])], str(tmp_path / "gold.jsonl"),
               {"source": str(gold_rm), "batch_size": 3}, {}, "float32")
    labels = read_jsonl(tmp_path / "gold.jsonl")
    by_id = {p["id"]: p for p in prompts}
    expected = score_conversations(*load_reward_model(gold_rm),
                                   [conversation(by_id[s["prompt_id"]], s["response"]) for s in samples], 1)
    assert [(g["prompt_id"], g["sample"]) for g in labels] == [(s["prompt_id"], s["sample"]) for s in samples]
    np.testing.assert_allclose([g["gold"] for g in labels], expected, rtol=1e-4, atol=1e-5)

    score_samples(str(gold_rm), str(tmp_path / "samples.jsonl"), [str(prompt_data["preference"])],
                  str(tmp_path / "proxy.jsonl"), {"batch_size": 4}, "float32")
    proxy = read_jsonl(tmp_path / "proxy.jsonl")
    assert [(p["prompt_id"], p["sample"]) for p in proxy] == [(s["prompt_id"], s["sample"]) for s in samples]
    np.testing.assert_allclose([p["reward"] for p in proxy], expected, rtol=1e-4, atol=1e-5)


def test_base_from_a_local_model_dir(tiny_base, tmp_path):
    import shutil

    from rmood.sft.base import make_base

    make_base([], tmp_path / "copy", 0, {"source": str(tiny_base), "tiny": {}})
    assert (tmp_path / "copy" / "model.safetensors").read_bytes() == (tiny_base / "model.safetensors").read_bytes()
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_base, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ValueError, match="no \\*.safetensors"):
        make_base([], tmp_path / "refused", 0, {"source": str(pickled), "tiny": {}})
    with pytest.raises(FileNotFoundError, match="not a Hugging Face model directory"):
        make_base([], tmp_path / "refused", 0, {"source": str(tmp_path / "nothing"), "tiny": {}})


def test_length_grouped_sampler_batches_similar_lengths_in_random_order():
    from rmood.training import length_grouped_sampler

    lengths = [(7 * i) % 61 for i in range(400)]
    torch.manual_seed(0)
    first = list(length_grouped_sampler(lengths, 8, mega_batches=10))
    torch.manual_seed(0)
    assert list(length_grouped_sampler(lengths, 8, mega_batches=10)) == first  # seeded by torch's generator
    assert sorted(first) == list(range(400))  # every example once per epoch
    batches = [first[i : i + 8] for i in range(0, 400, 8)]
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 10  # random batches of 8 spread over ~48 of the 0..60 lengths
    maxima = [max(lengths[i] for i in b) for b in batches[:10]]
    assert maxima != sorted(maxima, reverse=True) and maxima != sorted(maxima)  # no long-to-short sweep


def test_reward_pairs_are_tokenized_as_the_reward_trainer_would(tiny_base, prompt_data, tmp_path):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from rmood.rm.score import tokenize
    from rmood.rm.train import reward_model_from_policy, tokenize_pairs

    convs = conversations(prompt_data["preference"], 12)
    records = [{"chosen": convs[i], "rejected": convs[i + 1], "tie": i % 4 == 0} for i in range(0, 12, 2)]
    model, tokenizer = reward_model_from_policy(str(tiny_base), 0, "float32")
    args = RewardConfig(output_dir=str(tmp_path / "unused"), report_to="none", use_cpu=True, activation_checkpointing=False)
    trl_view = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(
        [{"chosen": r["chosen"], "rejected": r["rejected"]} for r in records]), processing_class=tokenizer).train_dataset
    ours = tokenize_pairs(tokenizer, records)
    assert [r["chosen_ids"] for r in ours] == trl_view["chosen_ids"]
    assert [r["rejected_ids"] for r in ours] == trl_view["rejected_ids"]
    assert [r["tie"] for r in ours] == [r["tie"] for r in records]  # extra columns travel along
    one_by_one = [AutoTokenizer.from_pretrained(tiny_base).apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]
                  for c in convs]
    assert tokenize(tokenizer, convs) == one_by_one and tokenize(tokenizer, []) == []


def test_identical_conversations_get_the_same_score_as_alone(tiny_base, prompt_data, tmp_path):
    from rmood.rm.score import load_reward_model, score_conversations

    model, tokenizer = load_reward_model(save_reward_model(tiny_base, tmp_path / "rm"))
    convs = conversations(prompt_data["preference"], 6)
    repeated = [convs[i % 6] for i in range(20)]
    scores = score_conversations(model, tokenizer, repeated, 4)
    alone = score_conversations(model, tokenizer, convs, 4)
    np.testing.assert_allclose(scores, [alone[i % 6] for i in range(20)], rtol=0, atol=1e-5)


def test_reward_model_trains_with_length_grouped_batches_deterministically(tiny_base, prompt_data, tmp_path):
    from rmood.io import write_jsonl
    from rmood.rm.train import train_reward_model

    convs = conversations(prompt_data["preference"], 16)
    write_jsonl(tmp_path / "pairs.jsonl", [{"chosen": convs[i], "rejected": convs[i + 1]} for i in range(0, 16, 2)])
    settings = {**TRAINER, "group_by_length": True}
    for run in ("a", "b"):
        train_reward_model(str(tiny_base), str(tmp_path / "pairs.jsonl"), str(tmp_path / run), str(tmp_path / f"work-{run}"),
                           0, settings, "float32")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
