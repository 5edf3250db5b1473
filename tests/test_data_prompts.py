"""Prompt formatting and the one place prompts meet a model's context: `fit_prompts` before sampling."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rmood.data.prompts import NO_LIMIT, context_length, fit_prompts, to_messages


def test_plain_and_alpaca_messages() -> None:
    assert to_messages("Add.", "1 2") == [{"role": "user", "content": "Add.\n\n1 2"}]
    assert to_messages("Add.")[0]["content"] == "Add."
    assert "### Input:\n1 2" in to_messages("Add.", "1 2", "alpaca")[0]["content"]
    with pytest.raises(ValueError, match="unknown prompt template 'x'"):
        to_messages("Add.", template="x")


def test_context_length_takes_the_tighter_real_limit() -> None:
    config = SimpleNamespace(max_position_embeddings=512)
    assert context_length(config) == 512
    assert context_length(config, SimpleNamespace(model_max_length=256)) == 256
    assert context_length(config, SimpleNamespace(model_max_length=int(1e30))) == 512  # the "no limit" sentinel
    assert context_length(SimpleNamespace(), SimpleNamespace(model_max_length=NO_LIMIT)) is None
    assert context_length(tokenizer=SimpleNamespace(model_max_length=300)) == 300 and context_length() is None
    assert context_length(SimpleNamespace(pad_token_id=0)) is None  # an ensemble's config says nothing


def test_context_length_of_the_tiny_base(tiny_base) -> None:
    from transformers import AutoConfig, AutoTokenizer

    assert context_length(AutoConfig.from_pretrained(tiny_base), AutoTokenizer.from_pretrained(tiny_base)) == 256


ENCODED = [({"id": f"p{i}"}, [1] * n) for i, n in enumerate((10, 40, 24, 25, 3))]


def test_long_prompts_are_skipped_in_order_and_counted(capsys) -> None:
    kept = fit_prompts(ENCODED, context=32, max_new_tokens=8, what="sampling shard 0")
    assert [p["id"] for p, _ in kept] == ["p0", "p2", "p4"]  # 24 + 8 new tokens fit a 32-token context exactly
    assert capsys.readouterr().out == (
        "sampling shard 0: skipped 2 of 5 prompts longer than 24 tokens (context 32 − 8 new tokens), e.g. p1\n"
    )


def test_nothing_to_skip_logs_nothing(capsys) -> None:
    assert fit_prompts(ENCODED, context=48, max_new_tokens=8, what="x") == ENCODED
    assert fit_prompts(ENCODED, context=None, max_new_tokens=8, what="x") == ENCODED
    assert capsys.readouterr().out == ""


def test_no_room_for_a_prompt_is_an_error() -> None:
    with pytest.raises(ValueError, match="sampling: 32 new tokens leave no room for a prompt in a context of 32"):
        fit_prompts(ENCODED, context=32, max_new_tokens=32, what="sampling")


def test_real_prompts_through_the_chat_template(tiny_base, prompt_data) -> None:
    from transformers import AutoTokenizer

    from rmood.generation import encode_prompt
    from rmood.io import read_jsonl

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    prompts = read_jsonl(prompt_data["preference"])[:3]
    long = {**prompts[0], "id": "long", "messages": to_messages("Reverse the string. " * 80)}
    encoded = [(p, encode_prompt(tokenizer, p["messages"])) for p in [*prompts, long]]
    assert len(encoded[-1][1]) > 256 - 24 >= max(len(ids) for _, ids in encoded[:3])
    assert fit_prompts(encoded, context_length(tokenizer=tokenizer), 24, "shard 0") == encoded[:3]
