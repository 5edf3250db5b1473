"""The MRM as models: the exported plain Qwen3 RM, the rich GDA-head model, the comparison and OOD checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from rmood.io import read_json, read_jsonl, read_npy, write_jsonl

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

PENALTY = 0.5
SCORING = {"batch_size": 4}


@pytest.fixture(autouse=True, scope="module")
def registered() -> None:
    """rmood's model classes registered with the Auto classes, as the steps that load models do it."""
    from rmood.rm.auto import register_models

    register_models()


def write_pairs(prompt_file: Path, out: Path, start: int, stop: int) -> Path:
    """Explicit-format pairs: the reference answer is chosen, a longer wrong one rejected."""
    records = read_jsonl(prompt_file)[start:stop]
    write_jsonl(out, [{"id": r["id"], "prompt": r["messages"], "chosen": r["reference"],
                       "rejected": r["reference"][::-1] * 2} for r in records])
    return out


def mahalanobis(features: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """min over the class means of sqrt((f − μ)ᵀ Σ⁻¹ (f − μ)), in float64: the numpy implementation
    (`rmood.mrm.gda.nearest_mahalanobis`, checked against its definition in tests/test_gda.py), to which these tests
    pin the rich MRM's torch one."""
    from rmood.mrm.gda import nearest_mahalanobis

    return nearest_mahalanobis(features, params["mu_pos"], params["mu_neg"], params["precision"])


@pytest.fixture(scope="module")
def study(tiny_base, prompt_data, tmp_path_factory) -> dict[str, Path]:
    """An RM, its training representations, a fitted GDA, and the exported and rich MRMs built from them."""
    from test_models import save_reward_model

    from rmood.mrm.gda import fit_gda
    from rmood.mrm.convert import convert_to_mrm
    from rmood.mrm.representations import pair_representations

    folder = tmp_path_factory.mktemp("mrm")
    paths = {
        "rm": save_reward_model(tiny_base, folder / "rm"),
        "train": write_pairs(prompt_data["preference"], folder / "train.explicit.jsonl", 0, 16),
        "test": write_pairs(prompt_data["preference"], folder / "test.explicit.jsonl", 16, 24),
        "ood": write_pairs(prompt_data["ood"], folder / "ood.explicit.jsonl", 0, 8),
        **{name: folder / f"{name}.npy" for name in ("chosen", "rejected", "message")},
        "gda": folder / "gda_parameters.npz",
        "model": folder / "model",
        "pen_model": folder / "pen_model",
    }
    pair_representations(str(paths["rm"]), str(paths["train"]),
                         [str(paths[n]) for n in ("chosen", "rejected", "message")], SCORING, "float32")
    fit_gda(paths["chosen"], paths["rejected"], paths["gda"], 8)
    convert_to_mrm(str(paths["rm"]), str(paths["gda"]), str(paths["model"]), str(paths["pen_model"]), PENALTY)
    return paths


def train_conversations(study) -> tuple[list, np.ndarray]:
    """The training responses (chosen, then rejected) and their representations."""
    from rmood.mrm.check import read_pairs, responses

    features = np.vstack([read_npy(study["chosen"]), read_npy(study["rejected"])]).astype(np.float64)
    return responses(read_pairs(str(study["train"]))), features


def rewards(path: Path, conversations: list) -> np.ndarray:
    from rmood.rm.score import load_reward_model, score_conversations

    return score_conversations(*load_reward_model(path), conversations, SCORING["batch_size"])


def test_exported_mrm_is_a_plain_qwen3_scoring_the_gda_reward(study):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.models.qwen3.modeling_qwen3 import Qwen3ForSequenceClassification

    from rmood.mrm.gda import load_gda
    from rmood.rm.score import right_pad, tokenize

    params = load_gda(study["gda"])
    config = json.loads((study["model"] / "config.json").read_text())
    assert config["model_type"] == "qwen3" and config["architectures"] == ["Qwen3ForSequenceClassification"]
    assert config["reward_bias"] == pytest.approx(float(params["bias"]))
    assert (study["model"] / "model.safetensors").is_file() and (study["model"] / "tokenizer.json").is_file()

    conversations, features = train_conversations(study)
    expected = features @ params["weight"]
    np.testing.assert_allclose(rewards(study["model"], conversations), expected + params["bias"], atol=1e-4)

    plain = AutoModelForSequenceClassification.from_pretrained(study["model"]).eval()  # what PPO / vLLM see
    assert type(plain) is Qwen3ForSequenceClassification
    tokenizer = AutoTokenizer.from_pretrained(study["model"])
    ids, mask = right_pad(tokenize(tokenizer, conversations), plain.config.pad_token_id, "cpu")
    with torch.no_grad():
        logits = plain(input_ids=ids, attention_mask=mask).logits[:, 0].double().numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_rich_mrm_equals_the_exported_model_the_rm_and_the_penalised_reward(study):
    from rmood.mrm.gda import load_gda
    from rmood.mrm.model import MRMForSequenceClassification
    from rmood.rm.score import load_reward_model, score_conversations

    params = load_gda(study["gda"])
    conversations, features = train_conversations(study)
    rich, tokenizer = load_reward_model(study["pen_model"])
    assert isinstance(rich, MRMForSequenceClassification) and rich.config.mahalanobis_penalty == PENALTY
    assert not hasattr(rich.config, "reward_bias")  # the rich model's bias is a buffer, inside its logits

    def scored() -> np.ndarray:
        return score_conversations(rich, tokenizer, conversations, SCORING["batch_size"])

    distance = mahalanobis(features, params)
    np.testing.assert_allclose(rich.score.mahalanobis(torch.from_numpy(features)).numpy(), distance, rtol=1e-4)
    penalised = scored()
    rich.config.mahalanobis_penalty = 0.0
    plain_gda = scored()
    np.testing.assert_allclose(plain_gda, rewards(study["model"], conversations), atol=1e-5)
    np.testing.assert_allclose(plain_gda - penalised, PENALTY * distance, rtol=1e-4)
    rich.use_gda_reward = False
    assert rich.config.use_gda_reward is False
    np.testing.assert_allclose(scored(), rewards(study["rm"], conversations), atol=1e-6)


@pytest.mark.parametrize("use_gda_reward", [True, False])
def test_head_scores_every_position(study, use_gda_reward):
    from transformers import AutoModelForSequenceClassification

    rich = AutoModelForSequenceClassification.from_pretrained(study["pen_model"]).eval()
    rich.use_gda_reward = use_gda_reward
    hidden = torch.randn(3, 5, rich.config.hidden_size)
    with torch.no_grad():
        per_position = rich.score(hidden)  # what TRL's PPO does
        per_row = rich.score(hidden.reshape(15, -1))
    assert per_position.shape == (3, 5, 1)
    torch.testing.assert_close(per_position.reshape(15, 1), per_row)
    if use_gda_reward:
        expected = rich.score.compute_gda_reward(hidden) - PENALTY * rich.score.mahalanobis(hidden)
        torch.testing.assert_close(per_position[..., 0], expected)


def test_rich_mrm_round_trips_with_its_buffers(study, tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification

    from rmood.mrm.gda import load_gda
    from rmood.mrm.model import BUFFERS, MRMForSequenceClassification

    config = json.loads((study["pen_model"] / "config.json").read_text())
    assert config["model_type"] == "rmood_mrm" and config["architectures"] == ["MRMForSequenceClassification"]
    assert config["use_gda_reward"] is True and config["mahalanobis_penalty"] == PENALTY
    assert "reward_bias" not in config
    with safe_open(study["pen_model"] / "model.safetensors", "pt") as f:
        assert {f"score.{name}" for name in BUFFERS} | {"score.original.weight"} <= set(f.keys())
        assert all(f.get_slice(f"score.{name}").get_dtype() == "F32" for name in BUFFERS)

    params = load_gda(study["gda"])
    rich = AutoModelForSequenceClassification.from_pretrained(study["pen_model"])
    assert isinstance(rich, MRMForSequenceClassification)
    for name in BUFFERS:
        torch.testing.assert_close(getattr(rich.score, name), torch.as_tensor(params[name], dtype=torch.float32))
    rm = AutoModelForSequenceClassification.from_pretrained(study["rm"])
    assert torch.equal(rich.score.original.weight, rm.score.weight)
    assert all(torch.equal(t, rm.model.state_dict()[k]) for k, t in rich.model.state_dict().items())

    rich.use_gda_reward = False
    rich.save_pretrained(tmp_path / "again")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "again")
    assert again.use_gda_reward is False and torch.equal(again.score.precision, rich.score.precision)
    half = AutoModelForSequenceClassification.from_pretrained(study["pen_model"], dtype=torch.bfloat16)
    assert half.model.norm.weight.dtype == torch.bfloat16
    assert all(getattr(half.score, name).dtype == torch.float32 for name in BUFFERS)


def test_registration_is_an_explicit_call_not_an_import(study):
    code = (
        "import rmood.rm, rmood.mrm.model, rmood.rm.inform\n"
        "from transformers import AutoModelForSequenceClassification\n"
        "try:\n"
        f"    AutoModelForSequenceClassification.from_pretrained({str(study['pen_model'])!r})\n"
        "except (ValueError, KeyError):\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('importing registered the rich MRM')\n"
        "from rmood.rm.auto import register_models\n"
        "register_models()\n"
        f"model = AutoModelForSequenceClassification.from_pretrained({str(study['pen_model'])!r})\n"
        "assert type(model).__name__ == 'MRMForSequenceClassification', type(model)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_compare_weights_with_the_rm_weight_and_a_failed_check(study, tmp_path):
    from rmood.mrm.gda import load_gda
    from rmood.mrm.check import compare_weights
    from rmood.mrm.convert import convert_to_mrm
    from rmood.rm.score import ModelError, load_reward_model

    rm, _ = load_reward_model(study["rm"])
    params = load_gda(study["gda"])
    same = tmp_path / "same.npz"
    np.savez(same, **{**params, "weight": rm.score.weight.detach().double().numpy()[0]})
    convert_to_mrm(str(study["rm"]), str(same), str(tmp_path / "model"), str(tmp_path / "pen_model"), PENALTY)

    def compare(gda: Path) -> dict:
        compare_weights(str(study["rm"]), str(tmp_path / "model"), str(tmp_path / "pen_model"), str(gda),
                        str(study["test"]), str(study["train"]), [str(study["chosen"]), str(study["rejected"])],
                        str(tmp_path / "compare.json"), SCORING, "float32")
        return read_json(tmp_path / "compare.json")

    report = compare(same)
    assert report["weights"]["cosine"] == pytest.approx(1.0)
    assert report["weights"]["gda_norm"] == pytest.approx(report["weights"]["rm_norm"])
    assert report["test_rewards"]["n"] == 16
    assert report["test_rewards"]["pearson"] == pytest.approx(1.0) and report["test_rewards"]["spearman"] == 1.0
    assert report["export_check"]["n"] == report["rich_check"]["n"] == 32
    assert report["export_check"]["max_abs_error"] < 1e-4
    assert report["rich_check"]["gda_mode_max_abs_error"] < 1e-4
    assert report["rich_check"]["original_mode_max_abs_error"] < 1e-6
    with pytest.raises(ModelError, match="rewards differ"):
        compare(study["gda"])  # the models hold the RM's weight, the npz the fitted one


def test_ood_summary_separates_far_distances():
    from rmood.mrm.check import ood_summary

    near, far = np.array([1.0, 2.0, 1.5]), np.array([10.0, 12.0])
    assert ood_summary(near, far) == {"auroc": 1.0, "n_id": 3, "n_ood": 2, "mean_distance_id": 1.5,
                                      "mean_distance_ood": 11.0}
    assert ood_summary(far, near)["auroc"] == 0.0
    assert ood_summary(near, np.empty(0))["auroc"] is None


def test_ood_auroc_uses_the_mahalanobis_distance_of_the_mrm_features(study, tmp_path):
    from rmood.mrm.gda import load_gda
    from rmood.mrm.check import ood_auroc, read_pairs, responses
    from rmood.mrm.representations import features
    from rmood.rm.score import load_reward_model

    out = tmp_path / "ood.json"
    ood_auroc(str(study["model"]), str(study["gda"]), str(study["test"]), str(study["ood"]), str(out), SCORING,
              "float32")
    report = read_json(out)
    model, tokenizer = load_reward_model(study["model"])
    params = load_gda(study["gda"])
    expected = {name: mahalanobis(features(model, tokenizer, responses(read_pairs(str(study[name]))), 4), params)
                for name in ("test", "ood")}
    assert report["n_id"] == expected["test"].size == 16 and report["n_ood"] == expected["ood"].size == 16
    assert report["mean_distance_id"] == pytest.approx(expected["test"].mean(), rel=1e-4)
    assert report["mean_distance_ood"] == pytest.approx(expected["ood"].mean(), rel=1e-4)
    assert 0.0 <= report["auroc"] <= 1.0


def test_conversion_refuses_a_gda_of_another_width(study, tmp_path):
    from rmood.mrm.gda import load_gda
    from rmood.mrm.convert import export_mrm
    from rmood.rm.score import ModelError

    params = load_gda(study["gda"])
    np.savez(tmp_path / "wide.npz", **{**params, "weight": np.zeros(params["weight"].size + 1)})
    with pytest.raises(ModelError, match="bias-free score layer of shape"):
        export_mrm(str(study["rm"]), str(tmp_path / "wide.npz"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def write_samples(prompt_file: Path, out: Path, answer) -> Path:
    """Two samples per prompt of the first 6 prompts: the reference answer transformed by `answer`."""
    records = read_jsonl(prompt_file)[:6]
    write_jsonl(out, [{"prompt_id": r["id"], "sample": i, "response": answer(r["reference"]) + "!" * i,
                       "finished": True, "tokens": [1, 2]} for r in records for i in range(2)])
    return out


def test_distances_of_samples_and_the_sft_reference(study, prompt_data, tmp_path):
    from rmood.mrm.distance import outlier_threshold, reference_distances, sample_distances
    from rmood.mrm.gda import load_gda
    from rmood.mrm.representations import features
    from rmood.rm.score import load_reward_model
    from rmood.data.prompts import conversation
    from rmood.io import DataError

    prompts = [str(prompt_data["preference"])]
    sft = write_samples(prompt_data["preference"], tmp_path / "step_0" / "samples.jsonl", lambda a: a)
    drifted = write_samples(prompt_data["preference"], tmp_path / "step_5" / "samples.jsonl", lambda a: a[::-1] * 3)
    out = [tmp_path / "step_0" / "distance.jsonl", tmp_path / "step_5" / "distance.jsonl"]
    sample_distances(str(study["rm"]), str(study["gda"]), [str(sft), str(drifted)], prompts, [str(p) for p in out],
                     SCORING, "float32")
    model, tokenizer = load_reward_model(study["rm"])
    params = load_gda(study["gda"])
    by_id = {r["id"]: r for r in read_jsonl(prompt_data["preference"])}
    for samples, written in zip((sft, drifted), out):  # the rm's features of prompt + response under the GDA fit
        records = read_jsonl(samples)
        expected = mahalanobis(features(model, tokenizer, [conversation(by_id[r["prompt_id"]], r["response"])
                                                           for r in records], 4), params)
        rows = read_jsonl(written)
        assert [(r["prompt_id"], r["sample"]) for r in rows] == [(r["prompt_id"], r["sample"]) for r in records]
        assert [r["distance"] for r in rows] == pytest.approx(expected.tolist(), rel=1e-4)

    reference = tmp_path / "distance_reference.json"
    reference_distances(str(study["rm"]), str(study["gda"]), str(sft), prompts,
                        [str(study["chosen"]), str(study["rejected"])], str(tmp_path / "sft.jsonl"), str(reference),
                        0.9, SCORING, "float32")
    summary = read_json(reference)
    distances = np.array([r["distance"] for r in read_jsonl(out[0])])
    assert read_jsonl(tmp_path / "sft.jsonl") == read_jsonl(out[0])
    assert summary["quantile"] == 0.9 and summary["sft"] == {"n": 12, "mean": pytest.approx(distances.mean())}
    assert outlier_threshold(str(reference)) == pytest.approx(np.quantile(distances, 0.9))
    _, train = train_conversations(study)
    assert summary["train"] == {"n": 32, "mean": pytest.approx(mahalanobis(train, params).mean(), rel=1e-4)}

    np.save(tmp_path / "nan.npy", np.full((2, train.shape[1]), np.nan, dtype=np.float32))
    with pytest.raises(DataError, match=r"nan\.npy: 2 of 2 feature rows are not finite \(first: row 0\)"):
        reference_distances(str(study["rm"]), str(study["gda"]), str(sft), prompts, [str(tmp_path / "nan.npy")],
                            str(tmp_path / "sft.jsonl"), str(reference), 0.9, SCORING, "float32")
    write_jsonl(tmp_path / "empty.jsonl", [])
    with pytest.raises(DataError, match="empty.jsonl: no samples"):
        sample_distances(str(study["rm"]), str(study["gda"]), [str(tmp_path / "empty.jsonl")], prompts,
                         [str(tmp_path / "x.jsonl")], SCORING, "float32")


def test_distances_in_the_inform_latent_space(study, tiny_base, prompt_data, tmp_path):
    """A Gaussian of the training responses' InfoRM latents (scikit-learn's Ledoit-Wolf), every sample's distance
    from it and the outlier threshold (a quantile of the SFT samples'); an RM without a latent space is refused."""
    from sklearn.covariance import LedoitWolf

    from rmood.mrm.distance import LATENT_KEYS, latent_distances, latent_reference, latent_threshold
    from rmood.io import read_npz
    from rmood.rm.inform import inform_from_policy
    from rmood.rm.score import ModelError

    model, tokenizer = inform_from_policy(str(tiny_base), 4, 0, "float32")
    model.save_pretrained(tmp_path / "inform")
    tokenizer.save_pretrained(tmp_path / "inform")
    prompts = [str(prompt_data["preference"])]
    sft = write_samples(prompt_data["preference"], tmp_path / "step_0" / "samples.jsonl", lambda a: a)
    drifted = write_samples(prompt_data["preference"], tmp_path / "step_5" / "samples.jsonl", lambda a: a[::-1] * 3)
    reference = tmp_path / "latent_reference.npz"
    latent_reference(str(tmp_path / "inform"), str(study["train"]), str(sft), prompts,
                     str(tmp_path / "step_0" / "latent.jsonl"), str(reference), 0.8, SCORING, "float32")
    latent_distances(str(tmp_path / "inform"), str(reference), [str(sft), str(drifted)], prompts,
                     [str(tmp_path / name) for name in ("again.jsonl", "drifted.jsonl")], SCORING, "float32")
    own = np.array([r["distance"] for r in read_jsonl(tmp_path / "step_0" / "latent.jsonl")])
    assert [r["distance"] for r in read_jsonl(tmp_path / "again.jsonl")] == pytest.approx(own.tolist(), rel=1e-6)
    fit = read_npz(reference, LATENT_KEYS)
    assert float(fit["quantile"]) == 0.8 and latent_threshold(str(reference)) == pytest.approx(np.quantile(own, 0.8))

    from rmood.mrm.representations import features
    from rmood.data.prompts import conversation

    def latents(conversations: list) -> np.ndarray:
        hidden = features(model.eval(), tokenizer, conversations, 4)
        return model.score.encode(torch.from_numpy(hidden))[0].detach().double().numpy()

    by_id = {r["id"]: r for r in read_jsonl(prompt_data["preference"])}
    expected = LedoitWolf().fit(latents(train_conversations(study)[0]))
    samples = latents([conversation(by_id[r["prompt_id"]], r["response"]) for r in read_jsonl(sft)])
    assert own == pytest.approx(np.sqrt(expected.mahalanobis(samples)), rel=1e-4)
    assert len(read_jsonl(tmp_path / "drifted.jsonl")) == 12
    with pytest.raises(ModelError, match="not an InfoRM"):
        latent_distances(str(study["rm"]), str(reference), [str(sft)], prompts, [str(tmp_path / "x.jsonl")],
                         SCORING, "float32")
