"""The lenbt method: a valid RMOOD plugin, and the length expert as TRL's margin."""

import math

from rmood.rm.methods import BUILT_IN, plugin_problem
from rmood_lenbt import METHOD
from rmood_lenbt.train import length_margins


def words(text: str, add_special_tokens: bool = False) -> dict:
    """A tokenizer whose tokens are the words of the text."""
    return {"input_ids": text.split()}


def conversation(response: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": "a question"}, {"role": "assistant", "content": response}]


def test_the_method_is_a_valid_plugin() -> None:
    assert plugin_problem(METHOD, BUILT_IN) is None
    assert METHOD.step == "train_lenbt" and METHOD.section == "lenbt"


def test_the_margin_is_the_length_expert_with_its_sign_for_the_trainer() -> None:
    pairs = [{"chosen": conversation("one two three four"), "rejected": conversation("one two"), "id": "a"},
             {"chosen": conversation("one"), "rejected": conversation("one two three"), "id": "b"}]
    margins = length_margins(words, pairs, alpha=1.0, tokens=2)
    # RewardTrainer's logit is r_c − r_r − margin: a longer chosen response adds α·Δℓ/tokens to it
    assert [m["margin"] for m in margins] == [-1.0, 1.0]
    assert [m["id"] for m in margins] == ["a", "b"]  # the other columns are kept
    assert all(m["margin"] == 0 for m in length_margins(words, pairs, alpha=0.0, tokens=2))


def test_the_expert_explains_a_pure_length_preference() -> None:
    """With equal rewards, P(chosen) = σ(−margin): the longer response is preferred by the expert alone."""
    [pair] = length_margins(words, [{"chosen": conversation("a b c d e f"), "rejected": conversation("a b")}],
                            alpha=0.5, tokens=4)
    assert 1 / (1 + math.exp(pair["margin"])) == 1 / (1 + math.exp(-0.5))
