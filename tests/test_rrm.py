"""RRM: pair augmentation, labelling by `rm`, the threshold filter, the tie-aware loss and its trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rmood.io import DataError, read_json, read_jsonl, write_jsonl
from rmood.rrm_data.augment import augment_pairs, implicit
from rmood.rrm_data.filter import filter_pairs

RRM = {"non_contextual": 3, "neutral": 2, "threshold": 0.2, "neutral_loss_weight": 0.5}


def explicit_pairs(n: int) -> list[dict]:
    return [
        {"id": f"p{i}", "prompt": [{"role": "user", "content": f"question {i}"}], "chosen": f"good {i}",
         "rejected": f"bad {i}", "chosen_gold": 1.0, "rejected_gold": 0.0, "labels": "annotator"}
        for i in range(n)
    ]


def augment(tmp_path, pairs: list[dict], seed: int = 0, rrm: dict = RRM, name: str = "augmented") -> list[dict]:
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    augment_pairs(str(tmp_path / "pairs.jsonl"), str(tmp_path / f"{name}.jsonl"), seed, rrm)
    return read_jsonl(tmp_path / f"{name}.jsonl")


def test_augmentation_invariants(tmp_path):
    pairs = explicit_pairs(10)
    pairs[1]["rejected"] = pairs[0]["chosen"]  # a text that answers p0 too: never off-context for p0
    by_id = {p["id"]: p for p in pairs}
    out = augment(tmp_path, pairs)
    types = [r["type"] for r in out]
    assert types.count("original") == 10
    assert types.count("non_contextual") == 10 * RRM["non_contextual"]
    assert types.count("neutral") == 10 * RRM["neutral"]
    assert len({r["id"] for r in out}) == len(out)
    for r in out:
        pair = by_id[r["id"].split("/")[0]]
        own = {pair["chosen"], pair["rejected"]}
        assert r["prompt"] == pair["prompt"] and r["chosen"] != r["rejected"]
        assert r["label"] == (0.5 if r["type"] == "neutral" else 1.0)
        if r["type"] == "original":
            assert (r["chosen"], r["rejected"], r["source"]) == (pair["chosen"], pair["rejected"], [pair["id"]] * 2)
        elif r["type"] == "non_contextual":
            assert r["source"][0] == pair["id"] != r["source"][1] and r["chosen"] in own
            assert r["rejected"] in {by_id[r["source"][1]]["chosen"], by_id[r["source"][1]]["rejected"]} - own
        else:
            other = by_id[r["source"][0]]
            assert r["source"] == [other["id"]] * 2 and other["id"] != pair["id"]
            assert (r["chosen"], r["rejected"]) == (other["chosen"], other["rejected"]) and own.isdisjoint(
                (r["chosen"], r["rejected"]))
    assert implicit(out[0]) == {"id": "p0/original/0", "label": 1.0,
                                "chosen": [*pairs[0]["prompt"], {"role": "assistant", "content": "good 0"}],
                                "rejected": [*pairs[0]["prompt"], {"role": "assistant", "content": "bad 0"}]}


def test_augmentation_is_seeded_and_refuses_a_single_prompt(tmp_path):
    pairs = explicit_pairs(10)
    first, again, other = (augment(tmp_path, pairs, seed, name=f"a{i}") for i, seed in enumerate((0, 0, 1)))
    assert first == again and first != other
    assert augment(tmp_path, pairs, rrm={**RRM, "non_contextual": 0, "neutral": 0}) == [
        r for r in first if r["type"] == "original"]
    with pytest.raises(DataError, match="at least 2 distinct prompts"):
        augment(tmp_path, [pairs[0], {**pairs[1], "id": "p0"}])


def test_filter_keeps_the_threshold_boundary(tmp_path):
    records = [
        {"id": "a", "type": "original", "label": 1.0, "rm_prob": 0.99},
        {"id": "b", "type": "non_contextual", "label": 1.0, "rm_prob": 0.8},   # |p − label| = 0.2: kept
        {"id": "c", "type": "non_contextual", "label": 1.0, "rm_prob": 0.81},  # 0.19: dropped
        {"id": "d", "type": "neutral", "label": 0.5, "rm_prob": 0.7},          # 0.2: kept
        {"id": "e", "type": "neutral", "label": 0.5, "rm_prob": 0.31},         # 0.19: dropped
        {"id": "f", "type": "neutral", "label": 0.5, "rm_prob": 0.05},
    ]
    write_jsonl(tmp_path / "labeled.jsonl", records)
    filter_pairs(str(tmp_path / "labeled.jsonl"), str(tmp_path / "filtered.jsonl"), str(tmp_path / "stats.json"), RRM)
    assert [r["id"] for r in read_jsonl(tmp_path / "filtered.jsonl")] == ["a", "b", "d", "f"]
    assert read_json(tmp_path / "stats.json") == {
        "original": {"in": 1, "kept": 1}, "non_contextual": {"in": 2, "kept": 1}, "neutral": {"in": 3, "kept": 2}}


def test_rrm_loss_by_hand():
    import torch

    from rmood.rm.rrm import rrm_loss

    def log_sigmoid(x: float) -> float:
        return -math.log1p(math.exp(-x))

    chosen, rejected, tie = [1.0, 0.5, -2.0, 0.3], [0.0, 1.5, 1.0, 0.3], [0, 1, 0, 1]
    terms = [-w * (0.5 * (log_sigmoid(c - r) + log_sigmoid(r - c)) if t else log_sigmoid(c - r))
             for c, r, t, w in zip(chosen, rejected, tie, [1.0, 0.3, 1.0, 0.3])]
    loss = rrm_loss(torch.tensor(chosen), torch.tensor(rejected), torch.tensor(tie, dtype=torch.float), 0.3)
    assert loss.item() == pytest.approx(sum(terms) / 4, rel=1e-6)


@pytest.fixture(scope="module")
def rrm_pairs(tmp_path_factory, prompt_data):
    """Augmented pairs on real prompts (written as they come out of the filter), with ties."""
    folder = tmp_path_factory.mktemp("rrm")
    prompts = read_jsonl(prompt_data["preference"])[:6]
    pairs = [{"id": p["id"], "prompt": p["messages"], "chosen": p["reference"], "rejected": p["reference"] * 2}
             for p in prompts]
    rrm = {**RRM, "non_contextual": 1, "neutral": 1}
    records = augment(folder, pairs, rrm=rrm)
    assert {r["type"] for r in records} == {"original", "non_contextual", "neutral"}
    return folder / "augmented.jsonl", records


def test_the_collator_delivers_ties_aligned_with_the_pairs(tiny_base, rrm_pairs, tmp_path):
    from datasets import Dataset
    from trl import RewardConfig

    from rmood.rm.rrm import RRMTrainer
    from rmood.rm.score import tokenize
    from rmood.rm.train import reward_model_from_policy

    model, tokenizer = reward_model_from_policy(str(tiny_base), 0, "float32")
    records = [{**implicit(r), "tie": r["label"] == 0.5} for r in rrm_pairs[1]]
    args = RewardConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, report_to="none", use_cpu=True)
    trainer = RRMTrainer(model=model, args=args, train_dataset=Dataset.from_list(records), processing_class=tokenizer,
                         neutral_loss_weight=1.0)
    chosen_ids = tokenize(tokenizer, [r["chosen"] for r in records])
    tie_of = {tuple(ids): float(r["tie"]) for ids, r in zip(chosen_ids, records)}  # a chosen conversation ⇒ its tie
    seen = []
    for batch in trainer.get_train_dataloader():
        assert batch["tie"].dtype.is_floating_point and len(batch["tie"]) * 2 == len(batch["input_ids"])
        for ids, mask, tie in zip(batch["input_ids"], batch["attention_mask"], batch["tie"].tolist()):
            assert tie == tie_of[tuple(ids[mask.bool()].tolist())]
            seen.append(tie)
    assert len(seen) == len(records) and sum(seen) == sum(r["tie"] for r in records) > 0


@pytest.fixture(scope="module")
def trained_rrm(tiny_base, rrm_pairs, tmp_path_factory):
    """An RRM trained on the augmented pairs, with every `rrm_loss` call recorded."""
    from test_models import TRAINER

    from rmood.rm import rrm as rrm_module

    calls = []

    def recording_loss(chosen, rejected, tie, weight):
        calls.append((tie.detach().clone(), weight))
        return original(chosen, rejected, tie, weight)

    original = rrm_module.rrm_loss
    folder = tmp_path_factory.mktemp("rrm_model")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rrm_module, "rrm_loss", recording_loss)
        rrm_module.train_rrm(str(tiny_base), str(rrm_pairs[0]), str(folder / "model"), str(folder / "work"), 0, TRAINER,
                             RRM, "float32")
    return folder / "model", calls


def test_rrm_trains_with_ties_and_saves_a_plain_model(trained_rrm, rrm_pairs):
    from transformers import AutoModelForSequenceClassification

    out, calls = trained_rrm
    plain = AutoModelForSequenceClassification.from_pretrained(out)  # no trust_remote_code
    assert plain.config.num_labels == 1 and not (out.parent / "work").exists()
    ties = [t for tie, weight in calls for t in tie.tolist()]
    assert {weight for _, weight in calls} == {RRM["neutral_loss_weight"]}
    assert sum(ties) == sum(r["label"] == 0.5 for r in rrm_pairs[1]) and len(ties) == len(rrm_pairs[1])


def test_label_pairs_writes_sigmoid_of_the_margin(trained_rrm, rrm_pairs, tmp_path):
    from rmood.rm.score import load_reward_model, score_conversations
    from rmood.rrm_data.label import label_pairs

    model, records = trained_rrm[0], rrm_pairs[1]
    label_pairs(str(model), str(rrm_pairs[0]), str(tmp_path / "labeled.jsonl"), {"batch_size": 3}, "float32")
    labeled = read_jsonl(tmp_path / "labeled.jsonl")
    assert [{k: v for k, v in r.items() if k != "rm_prob"} for r in labeled] == records
    rm, tokenizer = load_reward_model(model)
    chosen = score_conversations(rm, tokenizer, [implicit(r)["chosen"] for r in records], 1)
    rejected = score_conversations(rm, tokenizer, [implicit(r)["rejected"] for r in records], 1)
    probs = np.array([r["rm_prob"] for r in labeled])
    assert np.all((probs > 0) & (probs < 1))
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(rejected - chosen)), rtol=1e-4, atol=1e-6)
