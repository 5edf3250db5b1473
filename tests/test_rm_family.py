"""WARM merging, ensembles, the side-by-side table and the `reward` command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rmood.io import DataError, read_json, read_jsonl, write_json
from test_models import conversations, save_reward_model

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def members(tiny_base, tmp_path_factory):
    """Three reward models on the tiny backbone that differ in their heads (and one backbone weight)."""
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path_factory.mktemp("members")
    paths = []
    for seed in range(3):
        path = save_reward_model(tiny_base, folder / f"m{seed}")
        model = AutoModelForSequenceClassification.from_pretrained(path)
        torch.manual_seed(seed)
        with torch.no_grad():
            model.score.weight.normal_()
            model.model.norm.weight.add_(0.1 * seed)
        model.save_pretrained(path)
        paths.append(path)
    return paths


def test_warm_is_the_mean_of_the_tensors(members, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from rmood.rm.warm import merge_models

    merge_models([str(p) for p in members], str(tmp_path / "warm"))
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "warm").state_dict()
    states = [AutoModelForSequenceClassification.from_pretrained(p).state_dict() for p in members]
    for name, tensor in merged.items():
        torch.testing.assert_close(tensor, torch.stack([s[name] for s in states]).mean(0))
    assert (tmp_path / "warm" / "tokenizer.json").is_file()


def test_warm_refuses_different_shapes(members, tiny_base, tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from rmood.rm.score import ModelError
    from rmood.rm.warm import merge_models

    config = AutoConfig.from_pretrained(members[0])
    config.intermediate_size *= 2
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "wide")
    with pytest.raises(ModelError, match="shape"):
        merge_models([str(members[0]), str(tmp_path / "wide")], str(tmp_path / "warm"))
    with pytest.raises(ModelError, match="at least two"):
        merge_models([str(members[0])], str(tmp_path / "warm"))


@pytest.mark.parametrize("reduction", ["mean", "wco", "uwo"])
def test_ensemble_rewards(members, prompt_data, tmp_path, reduction):
    from rmood.rm.ensemble import make_ensemble
    from rmood.rm.score import load_reward_model, score_conversations

    convs = conversations(prompt_data["preference"], 8)
    each = np.stack([score_conversations(*load_reward_model(p), convs, 4) for p in members])
    make_ensemble([str(p) for p in members], str(tmp_path / "ens"), reduction, 2.0)
    assert read_json(tmp_path / "ens" / "ensemble.json")["members"][0].startswith("..")  # relocatable
    combined = score_conversations(*load_reward_model(tmp_path / "ens"), convs, 4)
    expected = {"mean": each.mean(0), "wco": each.min(0), "uwo": each.mean(0) - 2.0 * each.var(0)}[reduction]
    np.testing.assert_allclose(combined, expected, rtol=1e-4, atol=1e-5)


@pytest.fixture
def member_scores(members, prompt_data, tmp_path):
    """Samples of the preference prompts (several per prompt) and each member's `score` of them."""
    from rmood.io import write_jsonl
    from rmood.rm.score import score_samples

    records = read_jsonl(prompt_data["preference"])[:6]
    samples = tmp_path / "samples.jsonl"
    write_jsonl(samples, ({"prompt_id": r["id"], "sample": k, "response": r["reference"] * (1 + k), "finished": True}
                          for r in records for k in range(3)))
    scores = [tmp_path / f"scores_{i}.jsonl" for i in range(len(members))]
    for member, out in zip(members, scores):
        score_samples(str(member), str(samples), [str(prompt_data["preference"])], str(out), {"batch_size": 4},
                      "float32")
    return samples, scores


@pytest.mark.parametrize("reduction", ["mean", "wco", "uwo"])
def test_an_ensembles_score_reduced_from_its_members_scores_is_its_own_score_bit_for_bit(
    members, member_scores, prompt_data, tmp_path, reduction
):
    from rmood.rm.ensemble import combine_scores, make_ensemble
    from rmood.rm.score import score_samples

    samples, scores = member_scores
    make_ensemble([str(p) for p in members], str(tmp_path / "ens"), reduction, 2.0)
    score_samples(str(tmp_path / "ens"), str(samples), [str(prompt_data["preference"])], str(tmp_path / "own.jsonl"),
                  {"batch_size": 4}, "float32")
    combine_scores(str(tmp_path / "ens"), [str(p) for p in scores], str(tmp_path / "combined.jsonl"))
    own = (tmp_path / "own.jsonl").read_bytes()
    assert (tmp_path / "combined.jsonl").read_bytes() == own
    assert len(set(r["reward"] for r in read_jsonl(tmp_path / "own.jsonl"))) > 3  # the members do tell samples apart


def test_an_ensembles_score_refuses_files_that_are_not_its_members_scores_of_the_same_samples(
    members, member_scores, tmp_path
):
    from rmood.io import write_jsonl
    from rmood.rm.ensemble import combine_scores, make_ensemble

    _, scores = member_scores
    make_ensemble([str(p) for p in members], str(tmp_path / "ens"), "mean", 1.0)
    with pytest.raises(ValueError, match="3 members, but 2 reward files"):
        combine_scores(str(tmp_path / "ens"), [str(p) for p in scores[:2]], str(tmp_path / "out.jsonl"))
    shuffled = tmp_path / "shuffled.jsonl"
    write_jsonl(shuffled, reversed(read_jsonl(scores[2])))
    with pytest.raises(DataError, match="shuffled.jsonl: not the samples of .*scores_0.jsonl, in the same order"):
        combine_scores(str(tmp_path / "ens"), [str(scores[0]), str(scores[1]), str(shuffled)],
                       str(tmp_path / "out.jsonl"))
    assert not (tmp_path / "out.jsonl").exists()


def test_an_ensembles_score_refuses_members_whose_rewards_are_not_their_logits(members, member_scores, tmp_path):
    import shutil

    from rmood.rm.ensemble import combine_scores, make_ensemble

    _, scores = member_scores
    biased = shutil.copytree(members[1], tmp_path / "biased")
    write_json(biased / "config.json", {**read_json(biased / "config.json"), "reward_bias": 0.5})
    make_ensemble([str(members[0]), str(biased), str(members[2])], str(tmp_path / "ens"), "mean", 1.0)
    with pytest.raises(ValueError, match="biased: a member with a reward_bias"):
        combine_scores(str(tmp_path / "ens"), [str(p) for p in scores], str(tmp_path / "out.jsonl"))


def test_ensemble_rejects_bad_settings(members, tmp_path):
    from rmood.rm.ensemble import make_ensemble

    with pytest.raises(ValueError, match="reduction"):
        make_ensemble([str(p) for p in members], str(tmp_path / "e"), "median", 1.0)
    with pytest.raises(ValueError, match="at least two"):
        make_ensemble([str(members[0])], str(tmp_path / "e"), "mean", 1.0)


def test_rm_table(tmp_path):
    from rmood.rm.table import rm_table

    block = {"n": 10, "accuracy": 0.7, "margin_mean": 0.5}
    checks = []
    for name, acc in (("rm", 0.6), ("golden", 0.8)):
        path = tmp_path / "rm" / name / "check.json"
        write_json(path, {"train": {**block, "pairs": 12}, "test": {**block, "accuracy": acc}, "ood": block})
        checks.append(str(path))
    rm_table(checks, str(tmp_path / "t.csv"), str(tmp_path / "t.md"))
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert rows[0] == "rm,train_accuracy,test_accuracy,ood_accuracy,test_margin_mean,ood_margin_mean,train_pairs"
    assert rows[1].startswith("rm,0.7000,0.6000,") and rows[2].startswith("golden,0.7000,0.8000,")
    assert rows[1].endswith(",12")
    assert "| golden" in (tmp_path / "t.md").read_text()


def test_check_leaves_out_tie_pairs(members, prompt_data, tmp_path):
    from rmood.io import write_jsonl
    from rmood.rm.check import pair_rewards
    from rmood.rm.score import load_reward_model

    prompt = read_jsonl(prompt_data["preference"])[0]["messages"]
    pairs = [{"prompt": prompt, "chosen": "a", "rejected": "b", "label": label} for label in (1.0, 0.5, 1.0)]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    model = load_reward_model(members[0])
    chosen, rejected, total = pair_rewards(*model, str(tmp_path / "pairs.jsonl"), 2)
    assert chosen.shape == rejected.shape == (2,) and total == 2


def test_check_scores_at_most_limit_pairs_evenly_spaced(members, prompt_data, tmp_path):
    from rmood.io import write_jsonl
    from rmood.rm.check import pair_rewards
    from rmood.rm.score import load_reward_model

    prompt = read_jsonl(prompt_data["preference"])[0]["messages"]
    pairs = [{"prompt": prompt, "chosen": "a" * (i + 1), "rejected": "b"} for i in range(10)]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    model = load_reward_model(members[0])
    every, _, total = pair_rewards(*model, str(tmp_path / "pairs.jsonl"), 4)
    some, _, same_total = pair_rewards(*model, str(tmp_path / "pairs.jsonl"), 4, limit=4)
    assert total == same_total == 10 and some.shape == (4,)
    assert some == pytest.approx(every[[0, 3, 6, 9]], abs=1e-5)  # the first, the last and evenly between


@pytest.mark.parametrize("reduction", ["mean", "wco", "uwo"])
def test_an_ensembles_check_reduced_from_its_members_rewards_is_its_own_check_bit_for_bit(
    members, prompt_data, tmp_path, reduction
):
    from rmood.io import write_jsonl
    from rmood.rm.check import check_ensemble, check_rm
    from rmood.rm.ensemble import make_ensemble

    records = read_jsonl(prompt_data["preference"])
    pairs = {split: tmp_path / f"{split}.jsonl" for split in ("train", "test", "ood")}
    for i, path in enumerate(pairs.values()):
        write_jsonl(path, ({"prompt": r["messages"], "chosen": r["reference"] * (1 + i),
                            "rejected": r["reference"][::-1]} for r in records[4 * i : 4 * i + 6]))
    scoring = {"batch_size": 4, "train_pairs": 5}

    def check(model, name):
        check_rm(str(model), *map(str, pairs.values()), str(tmp_path / f"{name}.json"), str(tmp_path / f"{name}.npz"),
                 scoring, "float32")

    for i, member in enumerate(members):
        check(member, f"member{i}")
    make_ensemble([str(p) for p in members], str(tmp_path / "ens"), reduction, 2.0)
    check(tmp_path / "ens", "own")
    check_ensemble(str(tmp_path / "ens"), [str(tmp_path / f"member{i}.npz") for i in range(3)],
                   str(tmp_path / "reduced.json"), str(tmp_path / "reduced.npz"))
    assert (tmp_path / "reduced.json").read_bytes() == (tmp_path / "own.json").read_bytes()
    own, reduced = (np.load(tmp_path / f"{name}.npz", allow_pickle=False) for name in ("own", "reduced"))
    assert sorted(own.files) == sorted(reduced.files) and all(own[k].tobytes() == reduced[k].tobytes() for k in own)
    assert read_json(tmp_path / "own.json")["train"]["n"] == 5

    write_jsonl(pairs["test"], read_jsonl(pairs["test"])[:3])
    check(members[0], "fewer")
    with pytest.raises(DataError, match="fewer.npz: not the rewards of the pairs of"):
        check_ensemble(str(tmp_path / "ens"), [str(tmp_path / f"member{i}.npz") for i in (0, 1)] +
                       [str(tmp_path / "fewer.npz")], str(tmp_path / "bad.json"), str(tmp_path / "bad.npz"))


def test_reward_command(members):
    from rmood.rm.score import load_reward_model, score_conversations

    result = subprocess.run(
        [sys.executable, "-m", "rmood", "reward", "--model", str(members[0]), "--prompt", "sort 2 1", "--response", "1 2"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    conv = [{"role": "user", "content": "sort 2 1"}, {"role": "assistant", "content": "1 2"}]
    expected = score_conversations(*load_reward_model(members[0]), [conv], 1)[0]
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(expected, abs=1e-5)
