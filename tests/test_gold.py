"""Gold reward: exact answers score 1, wrong, padded or unfinished answers score less, always in [0, 1]."""

from __future__ import annotations

import random
import string

import pytest

from rmood.data.synthetic import FAMILIES, make_task, verbose
from rmood.labeling.gold import gold_score, levenshtein


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("kitten", "sitting", 3),
        ("", "", 0),
        ("", "abc", 3),
        ("abc", "", 3),
        ("flaw", "lawn", 2),
        ("same", "same", 0),
    ],
)
def test_levenshtein_known_values(a: str, b: str, distance: int) -> None:
    assert levenshtein(a, b) == distance
    assert levenshtein(b, a) == distance


def test_reference_scores_exactly_one() -> None:
    rng = random.Random(0)
    for family in FAMILIES:
        reference = make_task(family, rng, 3, 7)["reference"]
        assert gold_score(reference, reference) == 1.0
        assert gold_score(f"  {reference}\n", reference) == 1.0  # surrounding whitespace is ignored


def test_wrong_answer_scores_lower() -> None:
    assert gold_score("1, 2, 4", "1, 2, 3") < 1.0
    assert gold_score("no", "yes") < gold_score("yes", "yes")
    assert gold_score("", "hgfe") == 0.0


def test_verbose_answer_scores_lower_than_reference() -> None:
    rng = random.Random(1)
    for family in FAMILIES:
        reference = make_task(family, rng, 3, 7)["reference"]
        padded = verbose(reference, rng)
        assert gold_score(padded, reference) < gold_score(reference, reference)


def test_verbosity_factor_applies_beyond_budget() -> None:
    reference = "7"  # budget 1.5 * 1 + 4 = 5.5 characters
    long_answer = "7" + " " * 3 + "x" * 10  # 14 characters, distance 13
    correctness = 1 - 13 / 14
    assert gold_score(long_answer, reference) == pytest.approx(correctness * 5.5 / 14)
    within_budget = "7 xyz"  # 5 characters: only correctness counts
    assert gold_score(within_budget, reference) == pytest.approx(1 - 4 / 5)


def test_unfinished_halves_the_score() -> None:
    assert gold_score("abc", "abc", finished=False) == 0.5
    assert gold_score("abd", "abc", finished=False) == pytest.approx(gold_score("abd", "abc") / 2)


def test_scores_in_unit_interval_for_random_strings() -> None:
    rng = random.Random(2)
    alphabet = string.ascii_lowercase[:8] + string.digits + " ,-\n"
    for _ in range(300):
        response = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        reference = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        score = gold_score(response, reference, finished=rng.random() < 0.5)
        assert 0.0 <= score <= 1.0
