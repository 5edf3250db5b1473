"""WARM merging, ensembles, the side-by-side table and the `reward` command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rmood.io import read_json, read_jsonl, write_json
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
    from rmood.rm.check import margins
    from rmood.rm.score import load_reward_model

    prompt = read_jsonl(prompt_data["preference"])[0]["messages"]
    pairs = [{"prompt": prompt, "chosen": "a", "rejected": "b", "label": label} for label in (1.0, 0.5, 1.0)]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    model = load_reward_model(members[0])
    diff, total = margins(*model, str(tmp_path / "pairs.jsonl"), 2)
    assert diff.shape == (2,) and total == 2


def test_check_scores_at_most_limit_pairs_evenly_spaced(members, prompt_data, tmp_path):
    from rmood.io import write_jsonl
    from rmood.rm.check import margins
    from rmood.rm.score import load_reward_model

    prompt = read_jsonl(prompt_data["preference"])[0]["messages"]
    pairs = [{"prompt": prompt, "chosen": "a" * (i + 1), "rejected": "b"} for i in range(10)]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    model = load_reward_model(members[0])
    every, total = margins(*model, str(tmp_path / "pairs.jsonl"), 4)
    some, same_total = margins(*model, str(tmp_path / "pairs.jsonl"), 4, limit=4)
    assert total == same_total == 10 and some.shape == (4,)
    assert some == pytest.approx(every[[0, 3, 6, 9]], abs=1e-5)  # the first, the last and evenly between


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
