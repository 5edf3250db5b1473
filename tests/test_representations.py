"""Reward-model representations: the score head's input, batched like scoring, written as aligned .npy files."""

from __future__ import annotations

import numpy as np
import pytest

from rmood.io import read_jsonl, write_jsonl
from conftest import TINY
from test_models import conversations, save_reward_model

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module", params=[False, True], ids=["pad", "pad_is_eos"])
def reward_model(request, tiny_base, tmp_path_factory):
    from rmood.rm.score import load_reward_model

    return load_reward_model(save_reward_model(tiny_base, tmp_path_factory.mktemp("rm") / "rm", request.param))


@pytest.fixture(scope="module")
def convs(prompt_data) -> list[list[dict[str, str]]]:
    return conversations(prompt_data["preference"], 12)


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, sequences))
    ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in sequences])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences])
    return ids, mask


def test_batched_features_equal_one_at_a_time(reward_model, convs):
    from rmood.mrm.representations import features

    model, tokenizer = reward_model
    batched = features(model, tokenizer, convs, batch_size=5)
    single = np.concatenate([features(model, tokenizer, [c], batch_size=1) for c in convs])
    assert batched.dtype == np.float32 and batched.shape == (len(convs), model.config.hidden_size)
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)
    assert np.unique(batched[:, 0].round(5)).size > 1  # rows differ: each conversation has its own state


def test_left_padding_gives_the_same_features(reward_model, convs):
    from rmood.mrm.representations import backbone_features, features
    from rmood.rm.score import tokenize

    model, tokenizer = reward_model
    ids, mask = left_pad(tokenize(tokenizer, convs), model.config.pad_token_id)
    assert (mask == 0).any()
    with torch.no_grad():
        left = backbone_features(model, ids, mask).numpy()
    np.testing.assert_allclose(left, features(model, tokenizer, convs, batch_size=1), rtol=1e-4, atol=1e-5)


def test_the_score_head_of_the_features_is_the_reward(reward_model, convs):
    from rmood.mrm.representations import backbone_features
    from rmood.rm.score import right_pad, tokenize

    model, tokenizer = reward_model
    ids, mask = right_pad(tokenize(tokenizer, convs), model.config.pad_token_id, "cpu")
    assert (mask == 0).any()
    with torch.no_grad():
        torch.testing.assert_close(model.score(backbone_features(model, ids, mask)), model(ids, mask).logits)


def test_message_only_inputs_have_no_assistant_turn(reward_model, convs):
    from rmood.mrm.representations import features
    from rmood.rm.score import tokenize

    model, tokenizer = reward_model
    messages = [c[:-1] for c in convs]
    assert tokenizer.decode(tokenize(tokenizer, messages[:1])[0]).count("assistant") == 0
    plain = features(model, tokenizer, messages, batch_size=4)
    prompted = features(model, tokenizer, messages, batch_size=4, add_generation_prompt=True)
    assert not np.allclose(plain, prompted)


def test_write_features_streams_the_same_rows(reward_model, convs, tmp_path):
    from rmood.mrm.representations import features, write_features

    model, tokenizer = reward_model
    out = tmp_path / "chosen.npy"
    write_features(model, tokenizer, convs, str(out), batch_size=5)
    written = np.load(out, allow_pickle=False)
    assert written.dtype == np.float32
    np.testing.assert_array_equal(written, features(model, tokenizer, convs, batch_size=5))
    assert [p.name for p in tmp_path.iterdir()] == ["chosen.npy"]


@pytest.fixture(scope="module")
def pairs_file(prompt_data, tmp_path_factory):
    records = read_jsonl(prompt_data["preference"])[:7]
    pairs = [{"id": r["id"], "prompt": r["messages"], "chosen": r["reference"], "rejected": r["reference"] * 2}
             for r in records]
    path = tmp_path_factory.mktemp("pairs") / "train.explicit.jsonl"
    write_jsonl(path, pairs)
    return path


def test_pair_representations(tiny_base, pairs_file, tmp_path):
    from rmood.mrm.representations import features, pair_representations
    from rmood.rm.score import load_reward_model

    rm = save_reward_model(tiny_base, tmp_path / "rm")
    out = [str(tmp_path / "reps" / name) for name in ("message.npy", "chosen.npy", "rejected.npy")]
    pair_representations(str(rm), str(pairs_file), out, {"batch_size": 3}, "float32")
    arrays = {n: np.load(tmp_path / "reps" / f"{n}.npy", allow_pickle=False) for n in ("chosen", "rejected", "message")}
    assert {a.shape for a in arrays.values()} == {(7, TINY["hidden_size"])}
    assert not np.allclose(arrays["message"], arrays["chosen"], atol=1e-3)
    pairs = read_jsonl(pairs_file)
    first = [[*pairs[0]["prompt"], {"role": "assistant", "content": pairs[0]["rejected"]}]]
    np.testing.assert_allclose(arrays["rejected"][:1], features(*load_reward_model(rm), first, 1), rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "reps").iterdir()) == ["chosen.npy", "message.npy", "rejected.npy"]


@pytest.mark.parametrize("names", [("chosen.npy", "rejected.npy"), ("chosen.npy", "rejected.npy", "prompt.npy"),
                                   ("chosen.npy", "rejected.npy", "message.npz"), ("chosen.npy",) * 3])
def test_pair_representations_refuses_other_outputs(tiny_base, pairs_file, tmp_path, names):
    from rmood.mrm.representations import pair_representations

    out = [str(tmp_path / n) for n in names]
    with pytest.raises(ValueError, match="expected the outputs"):
        pair_representations(str(tiny_base), str(pairs_file), out, {"batch_size": 2}, "float32")


def test_pair_representations_refuses_ensembles(tiny_base, pairs_file, tmp_path):
    from rmood.mrm.representations import pair_representations
    from rmood.rm.ensemble import make_ensemble
    from rmood.rm.score import ModelError

    members = [str(save_reward_model(tiny_base, tmp_path / f"m{i}")) for i in range(2)]
    make_ensemble(members, str(tmp_path / "ens"), "mean", 0.0)
    out = [str(tmp_path / f"{n}.npy") for n in ("chosen", "rejected", "message")]
    with pytest.raises(ModelError, match="ensemble"):
        pair_representations(str(tmp_path / "ens"), str(pairs_file), out, {"batch_size": 2}, "float32")
