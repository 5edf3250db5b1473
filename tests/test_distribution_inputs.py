"""The distribution analysis's inputs: prompt files, sample representations and the reward direction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import TINY
from rmood.io import DataError, read_jsonl, read_npy, write_jsonl
from test_models import save_reward_model

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

SCORING = {"batch_size": 3}


@pytest.fixture(scope="module")
def prompt_files(prompt_data, tmp_path_factory) -> list[str]:
    """Three ood prompts, one file each, written by select_prompts."""
    from rmood.distribution.inputs import select_prompts

    folder = tmp_path_factory.mktemp("prompts")
    ids = [r["id"] for r in read_jsonl(prompt_data["ood"])[2:5]]
    out = [str(folder / f"{i}.jsonl") for i in ids]
    select_prompts(str(prompt_data["ood"]), out)
    return out


@pytest.fixture(scope="module")
def samples(prompt_files, tmp_path_factory) -> Path:
    """Four responses of different lengths per prompt, in the sample step's format."""
    prompts = [read_jsonl(p)[0] for p in prompt_files]
    records = [{"prompt_id": p["id"], "sample": k, "response": p["reference"] * (k + 1), "finished": k % 2 == 0}
               for p in prompts for k in range(4)]
    path = tmp_path_factory.mktemp("samples") / "samples.jsonl"
    write_jsonl(path, records)
    return path


@pytest.fixture(scope="module")
def rm(tiny_base, tmp_path_factory) -> Path:
    return save_reward_model(tiny_base, tmp_path_factory.mktemp("rm") / "rm")


def analysis_inputs(model: Path, samples: Path, prompt_files: list[str], folder: Path) -> tuple[np.ndarray, ...]:
    """(representations, weight, rewards) of the samples under `model`, through the steps' files."""
    from rmood.distribution.inputs import sample_representations, score_weight
    from rmood.rm.score import score_samples

    paths = {name: folder / name for name in ("reps.npy", "weight.npy", "rewards.jsonl")}
    sample_representations(str(model), str(samples), prompt_files, str(paths["reps.npy"]), SCORING, "float32")
    score_weight(str(model), str(paths["weight.npy"]), "float32")
    score_samples(str(model), str(samples), prompt_files, str(paths["rewards.jsonl"]), SCORING, "float32")
    rewards = np.array([r["reward"] for r in read_jsonl(paths["rewards.jsonl"])])
    return np.load(paths["reps.npy"], allow_pickle=False), np.load(paths["weight.npy"], allow_pickle=False), rewards


def test_select_prompts_writes_each_record_to_its_file(prompt_data, prompt_files):
    split = {r["id"]: r for r in read_jsonl(prompt_data["ood"])}
    for path in map(Path, prompt_files):
        assert read_jsonl(path) == [split[path.stem]]


def test_select_prompts_refuses_unknown_ids_and_other_names(prompt_data, tmp_path):
    from rmood.distribution.inputs import select_prompts

    with pytest.raises(DataError, match="no prompt with id 'ood-999999'"):
        select_prompts(str(prompt_data["ood"]), [str(tmp_path / "ood-999999.jsonl")])
    with pytest.raises(ValueError, match="<prompt_id>.jsonl"):
        select_prompts(str(prompt_data["ood"]), [str(tmp_path / "ood-000000.json")])
    assert list(tmp_path.iterdir()) == []


def test_sample_representations_are_the_features_of_the_conversations(rm, samples, prompt_files, tmp_path):
    from rmood.distribution.inputs import sample_representations
    from rmood.mrm.representations import features
    from rmood.rm.score import load_reward_model

    out = tmp_path / "reps.npy"
    sample_representations(str(rm), str(samples), prompt_files, str(out), SCORING, "float32")
    written = np.load(out, allow_pickle=False)
    prompts = {r["id"]: r for p in prompt_files for r in read_jsonl(p)}
    convs = [[*prompts[s["prompt_id"]]["messages"], {"role": "assistant", "content": s["response"]}]
             for s in read_jsonl(samples)]
    assert written.dtype == np.float32 and written.shape == (len(convs), TINY["hidden_size"])
    np.testing.assert_array_equal(written, features(*load_reward_model(rm), convs, SCORING["batch_size"]))
    assert [p.name for p in tmp_path.iterdir()] == ["reps.npy"]


def test_plain_rm_weight_is_its_score_weight_and_gives_its_reward(rm, samples, prompt_files, tmp_path):
    from transformers import AutoModelForSequenceClassification

    reps, weight, rewards = analysis_inputs(rm, samples, prompt_files, tmp_path)
    expected = AutoModelForSequenceClassification.from_pretrained(rm).score.weight.detach().numpy()[0]
    assert weight.dtype == np.float32 and weight.shape == (TINY["hidden_size"],)
    np.testing.assert_array_equal(weight, expected)
    assert np.ptp(rewards) > 1e-3  # the rewards differ, so the check below means something
    np.testing.assert_allclose(reps.astype(np.float64) @ weight, rewards, atol=1e-4)


@pytest.fixture(scope="module")
def mrms(rm, tmp_path_factory) -> dict[str, Path]:
    """The exported and the rich (λ = 0.5) MRM of `rm`, from a GDA fitted on random representations."""
    from rmood.mrm.gda import fit_gda
    from rmood.mrm.convert import convert_to_mrm

    folder = tmp_path_factory.mktemp("mrm")
    rng = np.random.default_rng(0)
    for name, shift in (("chosen", 0.5), ("rejected", -0.5)):
        np.save(folder / f"{name}.npy", (rng.normal(size=(64, TINY["hidden_size"])) + shift).astype(np.float32))
    fit_gda(folder / "chosen.npy", folder / "rejected.npy", folder / "gda.npz", 16)
    convert_to_mrm(str(rm), str(folder / "gda.npz"), str(folder / "mrm"), str(folder / "mrm_pen"), 0.5)
    return {"gda": folder / "gda.npz", "mrm": folder / "mrm", "mrm_pen": folder / "mrm_pen"}


def test_mrm_weights_are_the_gda_weight_or_the_original_one(rm, mrms, samples, prompt_files, tmp_path):
    import json

    from rmood.distribution.inputs import score_weight
    from rmood.mrm.gda import load_gda

    gda = load_gda(mrms["gda"])["weight"].astype(np.float32)
    reps, weight, rewards = analysis_inputs(mrms["mrm"], samples, prompt_files, tmp_path)
    np.testing.assert_array_equal(weight, gda)
    np.testing.assert_allclose(reps.astype(np.float64) @ weight + load_gda(mrms["gda"])["bias"], rewards, atol=1e-4)

    score_weight(str(mrms["mrm_pen"]), str(tmp_path / "pen.npy"), "float32")
    np.testing.assert_array_equal(read_npy(tmp_path / "pen.npy"), gda)
    config = json.loads((mrms["mrm_pen"] / "config.json").read_text())
    (mrms["mrm_pen"] / "config.json").write_text(json.dumps({**config, "use_gda_reward": False}))
    score_weight(str(mrms["mrm_pen"]), str(tmp_path / "original.npy"), "float32")
    score_weight(str(rm), str(tmp_path / "rm.npy"), "float32")
    np.testing.assert_array_equal(read_npy(tmp_path / "original.npy"), read_npy(tmp_path / "rm.npy"))


def test_inform_reward_is_affine_in_the_representation(tiny_base, samples, prompt_files, tmp_path):
    from rmood.rm.inform import inform_from_policy

    model, tokenizer = inform_from_policy(str(tiny_base), 8, 0, "float32")
    with torch.no_grad():  # the initial head is near zero: give it rewards that differ visibly
        for parameter in model.score.parameters():
            parameter.normal_(0.0, 0.3)
    model.save_pretrained(tmp_path / "inform")
    tokenizer.save_pretrained(tmp_path / "inform")
    reps, weight, rewards = analysis_inputs(tmp_path / "inform", samples, prompt_files, tmp_path)
    head = model.eval().score
    with torch.no_grad():
        constant = float(head.reward_head(head.encode_head.bias[:8])[0])
        expected = head.reward_head.weight[0] @ head.encode_head.weight[:8]
    np.testing.assert_allclose(weight, expected.numpy(), rtol=1e-6, atol=1e-7)
    assert np.ptp(rewards) > 1e-3
    np.testing.assert_allclose(reps.astype(np.float64) @ weight + constant, rewards, atol=1e-4)


def test_ensembles_are_refused(tiny_base, samples, prompt_files, tmp_path):
    from rmood.distribution.inputs import sample_representations, score_weight
    from rmood.rm.ensemble import make_ensemble
    from rmood.rm.score import ModelError

    members = [str(save_reward_model(tiny_base, tmp_path / f"m{i}")) for i in range(2)]
    make_ensemble(members, str(tmp_path / "ens"), "mean", 0.0)
    with pytest.raises(ModelError, match="ensemble has no single backbone"):
        sample_representations(str(tmp_path / "ens"), str(samples), prompt_files, str(tmp_path / "r.npy"), SCORING,
                               "float32")
    with pytest.raises(ModelError, match="ensemble has no single reward direction"):
        score_weight(str(tmp_path / "ens"), str(tmp_path / "w.npy"), "float32")
    assert not (tmp_path / "r.npy").exists() and not (tmp_path / "w.npy").exists()
