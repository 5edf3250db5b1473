"""The arithmetic a job logs for bench/study.py (rmood/arithmetic.py): the tokens a reward model scored or a trainer
trained on, through the parameters they are multiplied by."""

from __future__ import annotations

import pytest

from rmood import arithmetic


def test_a_token_is_multiplied_through_every_parameter_but_the_input_embedding(tiny_base) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    lm = AutoModelForCausalLM.from_pretrained(tiny_base)
    embedding = lm.get_input_embeddings().weight.numel()
    total = sum(p.numel() for p in lm.parameters())
    tied = lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    assert arithmetic.matmul_parameters(lm) == (total if tied else total - embedding)
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=1)
    assert arithmetic.matmul_parameters(rm) == sum(p.numel() for p in rm.parameters()) - embedding


def test_scoring_counts_the_tokens_it_puts_through_the_model(tiny_base, prompt_data, tmp_path) -> None:
    from rmood.rm.score import load_reward_model, score_conversations, tokenize
    from test_models import conversations, save_reward_model

    model, tokenizer = load_reward_model(str(save_reward_model(tiny_base, tmp_path / "rm")), "float32")
    convs = conversations(prompt_data["preference"], 6)
    arithmetic.summary()  # a fresh start
    score_conversations(model, tokenizer, [*convs, convs[0]], batch_size=4)  # a repeat is scored once
    tokens = sum(len(ids) for ids in tokenize(tokenizer, convs))
    assert arithmetic.summary() == [
        f"rmood: arithmetic forward {tokens} tokens through {arithmetic.matmul_parameters(model)} parameters"]
    assert arithmetic.summary() == []


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        arithmetic.count("backward", 10, 10)


def test_an_ensemble_counts_its_members(tiny_base, tmp_path) -> None:
    from rmood.rm.ensemble import EnsembleRewardModel
    from rmood.rm.score import load_reward_model
    from test_models import save_reward_model

    members = [load_reward_model(str(save_reward_model(tiny_base, tmp_path / f"m{k}")), "float32")[0] for k in (0, 1)]
    ensemble = EnsembleRewardModel(members, "mean", 1.0)
    assert arithmetic.matmul_parameters(ensemble) == 2 * arithmetic.matmul_parameters(members[0])
