"""An AlpacaFarm-shaped synthetic data set: instruction-following tasks with exactly checkable answers.

Every prompt is an (instruction, input) pair from one task family; its `reference` is the one correct
answer, which the programmatic gold reward (`rmood.labeling.gold`) compares a response with. Inputs use
a small alphabet (letters a–h, digits, a few words made of them) and stay short, so a tiny model with a
512-token byte-level BPE can learn them. Everything is generated deterministically from a seed, with an
independent random stream per split.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from rmood.data import SPLITS
from rmood.data.prompts import TEMPLATES, to_messages

FAMILIES: tuple[str, ...] = (
    "reverse",
    "sort",
    "uppercase",
    "add",
    "count",
    "max",
    "unique",
    "brackets",
    "format_list",
    "repeat",
)
TRAIN_SPLITS = ("sft", "preference")
HELD_OUT_SPLITS = ("val", "eval", "ood")

LETTERS = "abcdefgh"
COUNT_LETTERS = "abcd"  # a smaller alphabet for `count`, so the counted letter actually recurs
WORDS = (
    "ace", "bad", "bag", "bed", "cab", "cage", "chef", "dab",
    "deaf", "each", "edge", "egg", "face", "fade", "feed", "head",
)  # fmt: skip
BRACKETS = {")": "(", "]": "["}
MAX_ATTEMPTS = 1000  # redraws allowed for one held-out prompt before the task space counts as exhausted

INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "reverse": (
        "Reverse the string.",
        "Write the letters in reverse order.",
        "Spell the string backwards.",
    ),
    "sort": ("Sort the numbers in ascending order.", "List the numbers from smallest to largest."),
    "uppercase": ("Convert the phrase to uppercase.", "Rewrite the phrase in capital letters."),
    "add": ("Add the two numbers.", "What is the sum of the two numbers?", "Compute the sum."),
    "count": (
        "Count how many times the letter appears in the text.",
        "How often does the letter occur in the text?",
    ),
    "max": ("Find the largest number.", "Which number is the biggest?", "Give the maximum of the list."),
    "unique": (
        "Remove the duplicates, keeping the first occurrence of each number.",
        "List each number once, in order of first appearance.",
    ),
    "brackets": (
        "Are the brackets balanced? Answer yes or no.",
        "Is this bracket string balanced? Say yes or no.",
    ),
    "format_list": ("Turn the list into a bullet list.", "Write each item on its own line as a bullet."),
    "repeat": ("Repeat the word the given number of times.", "Write the word as many times as the number says."),
}


def _numbers(rng: random.Random, n: int, high: int = 99) -> list[int]:
    return [rng.randint(0, high) for _ in range(n)]


def _join(items: list) -> str:
    return ", ".join(str(item) for item in items)


def is_balanced(text: str) -> bool:
    """Whether a string of () and [] brackets is balanced."""
    stack: list[str] = []
    for char in text:
        if char in BRACKETS:
            if not stack or stack.pop() != BRACKETS[char]:
                return False
        else:
            stack.append(char)
    return not stack


def _balanced_brackets(rng: random.Random, pairs: int) -> str:
    """A random balanced string of `pairs` bracket pairs."""
    closer = {opener: closing for closing, opener in BRACKETS.items()}
    out: list[str] = []
    stack: list[str] = []
    to_open = pairs
    while to_open or stack:
        if to_open and (not stack or rng.random() < 0.5):
            opener = rng.choice("([")
            stack.append(opener)
            out.append(opener)
            to_open -= 1
        else:
            out.append(closer[stack.pop()])
    return "".join(out)


def _reverse(rng: random.Random, n: int) -> tuple[str, str]:
    text = "".join(rng.choice(LETTERS) for _ in range(n))
    return text, text[::-1]


def _sort(rng: random.Random, n: int) -> tuple[str, str]:
    numbers = _numbers(rng, n)
    return _join(numbers), _join(sorted(numbers))


def _uppercase(rng: random.Random, n: int) -> tuple[str, str]:
    phrase = " ".join(rng.choice(WORDS) for _ in range(max(1, n // 2)))
    return phrase, phrase.upper()


def _add(rng: random.Random, n: int) -> tuple[str, str]:
    digits = (n + 1) // 2
    a, b = (rng.randint(0, 10**digits - 1) for _ in range(2))
    return f"{a} + {b}", str(a + b)


def _count(rng: random.Random, n: int) -> tuple[str, str]:
    letter = rng.choice(COUNT_LETTERS)
    text = "".join(rng.choice(COUNT_LETTERS) for _ in range(n))
    return f"letter: {letter}\ntext: {text}", str(text.count(letter))


def _max(rng: random.Random, n: int) -> tuple[str, str]:
    numbers = _numbers(rng, n)
    return _join(numbers), str(max(numbers))


def _unique(rng: random.Random, n: int) -> tuple[str, str]:
    numbers = _numbers(rng, n, high=9)
    return _join(numbers), _join(list(dict.fromkeys(numbers)))


def _brackets(rng: random.Random, n: int) -> tuple[str, str]:
    text = _balanced_brackets(rng, max(1, (n + 1) // 2))
    if rng.random() < 0.5:  # changing one bracket changes a bracket count, so the result is unbalanced
        i = rng.randrange(len(text))
        text = text[:i] + rng.choice([b for b in "()[]" if b != text[i]]) + text[i + 1 :]
    return text, "yes" if is_balanced(text) else "no"


def _format_list(rng: random.Random, n: int) -> tuple[str, str]:
    items = [rng.choice(WORDS) for _ in range(n)]
    return _join(items), "\n".join(f"- {item}" for item in items)


def _repeat(rng: random.Random, n: int) -> tuple[str, str]:
    word = rng.choice(WORDS)
    return f"word: {word}\ntimes: {n}", " ".join([word] * n)


GENERATORS: dict[str, Callable[[random.Random, int], tuple[str, str]]] = {
    "reverse": _reverse,
    "sort": _sort,
    "uppercase": _uppercase,
    "add": _add,
    "count": _count,
    "max": _max,
    "unique": _unique,
    "brackets": _brackets,
    "format_list": _format_list,
    "repeat": _repeat,
}


def _check_items(min_items: int, max_items: int) -> None:
    if min_items < 1:
        raise ValueError(f"min_items must be >= 1, got {min_items}")
    if min_items > max_items:
        raise ValueError(f"min_items ({min_items}) must not exceed max_items ({max_items})")


def make_task(family: str, rng: random.Random, min_items: int, max_items: int) -> dict[str, str]:
    """One task of `family`; its size (length, digits, repetitions) is drawn from [min_items, max_items].

    Returns {"task", "instruction", "input", "reference"}; `reference` is the exact correct answer.
    """
    if family not in GENERATORS:
        raise ValueError(f"unknown task family {family!r}; expected one of {FAMILIES}")
    _check_items(min_items, max_items)
    instruction = rng.choice(INSTRUCTIONS[family])
    input_, reference = GENERATORS[family](rng, rng.randint(min_items, max_items))
    return {"task": family, "instruction": instruction, "input": input_, "reference": reference}


def verbose(answer: str, rng: random.Random) -> str:
    """A padded variant of `answer`: a "The answer is: " prefix, an " ok ok" suffix, or both."""
    style = rng.choice(("prefix", "suffix", "both"))
    prefix = "The answer is: " if style in ("prefix", "both") else ""
    suffix = " ok ok" if style in ("suffix", "both") else ""
    return f"{prefix}{answer}{suffix}"


def _validate(
    sizes: dict[str, int],
    families: list[str],
    ood_families: list[str],
    min_items: int,
    max_items: int,
    verbose_fraction: float,
    prompt_template: str,
) -> None:
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown task families {unknown}; expected names from {FAMILIES}")
    if len(set(families)) != len(families):
        raise ValueError(f"families contains duplicates: {families}")
    outside = sorted(set(ood_families) - set(families))
    if outside:
        raise ValueError(f"ood_families {outside} are not in families {families}")
    training = [f for f in families if f not in ood_families]
    if len(training) < 2:
        raise ValueError(f"need at least 2 training families (families minus ood_families), got {training}")
    missing = [split for split in SPLITS if split not in sizes]
    extra = sorted(set(sizes) - set(SPLITS))
    if missing or extra:
        raise ValueError(f"sizes must give exactly the splits {SPLITS}; missing {missing}, unknown {extra}")
    negative = {split: size for split, size in sizes.items() if size < 0}
    if negative:
        raise ValueError(f"split sizes must be >= 0, got {negative}")
    if sizes["ood"] and not ood_families:
        raise ValueError(f"sizes['ood'] is {sizes['ood']} but ood_families is empty")
    _check_items(min_items, max_items)
    if not 0.0 <= verbose_fraction <= 1.0:
        raise ValueError(f"verbose_fraction must be in [0, 1], got {verbose_fraction}")
    if prompt_template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {prompt_template!r}; expected one of {TEMPLATES}")


def generate_splits(
    seed: int,
    sizes: dict[str, int],
    families: list[str],
    ood_families: list[str],
    min_items: int,
    max_items: int,
    verbose_fraction: float,
    prompt_template: str = "plain",
) -> dict[str, list[dict]]:
    """Generate every split of SPLITS, `sizes[split]` records each, deterministically from `seed`.

    The ood split draws only from `ood_families`, every other split only from the remaining families
    (cycled in order, so families are balanced). Each split has its own random stream, so one split's
    size never changes another split's tasks; held-out prompts (val, eval, ood) that also occur in
    sft/preference are redrawn. In sft, a `verbose_fraction` share of the demonstrations (`output`) are
    `verbose(reference)`; elsewhere `output == reference`.
    """
    _validate(sizes, families, ood_families, min_items, max_items, verbose_fraction, prompt_template)
    training = [f for f in families if f not in ood_families]
    train_prompts: set[tuple[str, str]] = set()
    splits: dict[str, list[dict]] = {}
    for split in SPLITS:  # sft and preference come first, so held-out splits can avoid their prompts
        rng = random.Random(f"{seed}-{split}")
        pool = list(ood_families) if split == "ood" else training
        records = []
        for i in range(sizes[split]):
            family = pool[i % len(pool)]
            for _ in range(MAX_ATTEMPTS):
                task = make_task(family, rng, min_items, max_items)
                if split not in HELD_OUT_SPLITS or (task["instruction"], task["input"]) not in train_prompts:
                    break
            else:
                raise ValueError(
                    f"cannot draw a {split} prompt of family {family!r} absent from sft/preference after "
                    f"{MAX_ATTEMPTS} tries; widen [min_items, max_items] = [{min_items}, {max_items}]"
                )
            if split in TRAIN_SPLITS:
                train_prompts.add((task["instruction"], task["input"]))
            records.append(
                {
                    "id": f"{split}-{i:06d}",
                    "split": split,
                    "source": family,
                    "instruction": task["instruction"],
                    "input": task["input"],
                    "messages": to_messages(task["instruction"], task["input"], prompt_template),
                    "output": task["reference"],
                    "reference": task["reference"],
                }
            )
        splits[split] = records
    verbose_rng = random.Random(f"{seed}-sft-verbose")
    n_sft = len(splits["sft"])
    for i in sorted(verbose_rng.sample(range(n_sft), round(verbose_fraction * n_sft))):
        record = splits["sft"][i]
        record["output"] = verbose(record["reference"], verbose_rng)
    return splits
