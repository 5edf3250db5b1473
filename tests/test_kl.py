"""KL(policy ‖ reference) of PPO checkpoints (`rmood.rl.kl`), checked against the exact KL.

Two toy Qwen3 models over five tokens (pad, eos, a, b, unk) with max_new_tokens 3 have only 85 possible
responses, so π(y) and π_ref(y) are enumerated here by step-by-step forward passes. The real hf sampler
draws from the policy at temperature 0.7 and the real `sequence_kl` measures the KL of those samples. The
last tests run the tiny byte-level BPE model of the workflow.
"""

from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import one_torch_thread
from rmood.io import read_jsonl, write_jsonl

torch = pytest.importorskip("torch")

VOCAB = {"<pad>": 0, "<eos>": 1, "a": 2, "b": 3, "<unk>": 4}
EOS = VOCAB["<eos>"]
PROMPTS = {"p0": "a b", "p1": "b"}
SAMPLING = dict(backend="hf", n=3000, temperature=0.7, top_p=1.0, max_new_tokens=3, batch_size=2, shards=1)


def save_toy_model(out: Path, seed: int) -> Path:
    """A 5-token Qwen3 causal LM with random weights drawn from `seed`, and a WordLevel tokenizer (pad ≠ eos) whose
    chat template renders the user's message as it is."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    backend = Tokenizer(models.WordLevel(VOCAB, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>")
    tokenizer.chat_template = "{{ messages[0]['content'] }}"
    config = Qwen3Config(vocab_size=len(VOCAB), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=16,
                         pad_token_id=VOCAB["<pad>"], eos_token_id=EOS, bos_token_id=None, tie_word_embeddings=False,
                         initializer_range=0.1)  # wide enough for a KL of about half a nat
    torch.manual_seed(seed)
    Qwen3ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def responses() -> list[tuple[int, ...]]:
    """Every response of at most max_new_tokens: up to its first eos, or max_new_tokens tokens without one."""
    others = [token for token in VOCAB.values() if token != EOS]
    length = SAMPLING["max_new_tokens"]
    return [(*body, EOS) for n in range(length) for body in itertools.product(others, repeat=n)] + \
        list(itertools.product(others, repeat=length))


def probabilities(model_dir: Path, prompt: str, temperature: float) -> dict[tuple[int, ...], float]:
    """π(y | prompt) of every response, as the product of softmax(logits / temperature) over its tokens."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompt_ids = [VOCAB[word] for word in prompt.split()]

    @functools.cache
    def next_token(prefix: tuple[int, ...]) -> np.ndarray:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt_ids + list(prefix)])).logits[0, -1].double()
        return torch.softmax(logits / temperature, -1).numpy()

    return {y: math.prod(next_token(y[:t])[token] for t, token in enumerate(y)) for y in responses()}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict:
    """The toy policy and reference, their exact response distributions, and the real sampler's and KL step's files."""
    from rmood.generation import sample_shard
    from rmood.rl.kl import sequence_kl

    folder = tmp_path_factory.mktemp("kl")
    policy, reference = save_toy_model(folder / "policy", 0), save_toy_model(folder / "reference", 1)
    prompts = folder / "prompts.jsonl"
    write_jsonl(prompts, [{"id": pid, "messages": [{"role": "user", "content": text}]}
                          for pid, text in PROMPTS.items()])
    models = {"policy": policy, "reference": reference}
    with one_torch_thread():
        sample_shard(str(policy), [str(prompts)], str(folder / "samples.jsonl"), 0, 0, SAMPLING, "float32")
        sequence_kl(str(policy), str(reference), str(folder / "samples.jsonl"), str(prompts), str(folder / "kl.jsonl"),
                    {"batch_size": 512}, SAMPLING, "float32")
        exact = {(name, pid, t): probabilities(path, text, t) for name, path in models.items()
                 for pid, text in PROMPTS.items() for t in (SAMPLING["temperature"], 1.0)}
    return {"folder": folder, "policy": policy, "reference": reference, "prompts": prompts, "exact": exact,
            "samples": read_jsonl(folder / "samples.jsonl"), "kl": read_jsonl(folder / "kl.jsonl")}


def test_the_enumerated_responses_carry_all_the_probability(toy) -> None:
    assert len(responses()) == 1 + 4 + 16 + 64
    for distribution in toy["exact"].values():
        assert sum(distribution.values()) == pytest.approx(1.0, abs=1e-12)


def chi_square_p(counts: dict[tuple[int, ...], int], expected: dict[tuple[int, ...], float]) -> float:
    """The p-value of Pearson's test of `counts` against the distribution `expected`, rare responses pooled."""
    from scipy.stats import chisquare

    n = sum(counts.values())
    cells = [[y] for y in expected if n * expected[y] >= 5]
    rare = [y for y in expected if n * expected[y] < 5]
    cells += [rare] if rare else []
    observed = [sum(counts.get(y, 0) for y in cell) for cell in cells]
    return chisquare(observed, [n * sum(expected[y] for y in cell) for cell in cells]).pvalue


def test_the_sampler_keeps_the_tokens_it_drew_from_the_tempered_policy(toy) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(toy["policy"])
    possible = set(responses())
    for record in toy["samples"]:
        tokens = tuple(record["tokens"])
        assert tokens in possible and record["finished"] == (tokens[-1] == EOS)
        assert record["response"] == tokenizer.decode(tokens, skip_special_tokens=True)
    temperature = SAMPLING["temperature"]
    for pid in PROMPTS:
        counts: dict[tuple[int, ...], int] = {}
        for record in toy["samples"]:
            if record["prompt_id"] == pid:
                counts[tuple(record["tokens"])] = counts.get(tuple(record["tokens"]), 0) + 1
        assert sum(counts.values()) == SAMPLING["n"]
        assert chi_square_p(counts, toy["exact"]["policy", pid, temperature]) > 1e-3
        assert chi_square_p(counts, toy["exact"]["policy", pid, 1.0]) < 1e-6  # the test tells the temperature


def test_rl_kl_is_the_exact_kl_of_the_sampled_tokens(toy) -> None:
    temperature = SAMPLING["temperature"]
    assert [(r["prompt_id"], r["sample"]) for r in toy["kl"]] == [(r["prompt_id"], r["sample"]) for r in toy["samples"]]
    for sample, record in zip(toy["samples"], toy["kl"]):
        y, pid = tuple(sample["tokens"]), sample["prompt_id"]
        p, q = toy["exact"]["policy", pid, temperature][y], toy["exact"]["reference", pid, temperature][y]
        assert record["tokens"] == len(y) and record["kl"] == pytest.approx(math.log(p / q), abs=1e-5)

    def kl(pid: str, scored: float) -> float:
        """E_π[log π_T'(y) − log π_ref,T'(y)] under the policy at the sampling temperature, T' = `scored`."""
        p, q = (toy["exact"][name, pid, scored] for name in ("policy", "reference"))
        return sum(pt * math.log(p[y] / q[y]) for y, pt in toy["exact"]["policy", pid, temperature].items())

    exact = np.mean([kl(pid, temperature) for pid in PROMPTS])  # equal samples per prompt
    untempered = np.mean([kl(pid, 1.0) for pid in PROMPTS])  # what temperature-1 log-probabilities estimate
    measured = np.array([r["kl"] for r in toy["kl"]])
    standard_error = measured.std(ddof=1) / np.sqrt(measured.size)
    assert abs(measured.mean() - exact) < 4 * standard_error
    assert abs(untempered - exact) > 8 * standard_error


def test_re_tokenizing_the_text_would_lose_sampled_tokens(toy) -> None:
    """The decoded text drops sampled special tokens (pad, unk), so its tokens are not the sampled ones."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(toy["policy"])
    def re_tokenized(record: dict) -> list[int]:
        return tokenizer(record["response"], add_special_tokens=False)["input_ids"] + [EOS] * record["finished"]

    changed = [r for r in toy["samples"] if re_tokenized(r) != r["tokens"]]
    assert len(changed) > len(toy["samples"]) / 4


def test_rl_kl_refuses_a_nucleus_and_samples_without_tokens(toy, tmp_path) -> None:
    from rmood.config import ConfigError
    from rmood.io import DataError
    from rmood.rl.kl import sequence_kl

    def run(samples: Path, sampling: dict) -> None:
        sequence_kl(str(toy["policy"]), str(toy["reference"]), str(samples), str(toy["prompts"]),
                    str(tmp_path / "kl.jsonl"), {"batch_size": 8}, sampling, "float32")

    with pytest.raises(ConfigError, match=r"^config key 'sampling.top_p': 0.9 < 1 .*set it to 1$"):
        run(toy["folder"] / "samples.jsonl", {**SAMPLING, "top_p": 0.9})
    old = [{k: v for k, v in r.items() if k != "tokens"} for r in toy["samples"][:3]]
    write_jsonl(tmp_path / "old.jsonl", old)
    message = rf"old\.jsonl: sample 0 of prompt {old[0]['prompt_id']} has no sampled token ids .*; resample the file$"
    with pytest.raises(DataError, match=message):
        run(tmp_path / "old.jsonl", SAMPLING)
    assert not (tmp_path / "kl.jsonl").exists()


def test_kl_of_a_model_against_itself_is_zero(toy, tmp_path, one_thread) -> None:
    from rmood.rl.kl import sequence_kl

    samples = toy["samples"][::20]
    write_jsonl(tmp_path / "samples.jsonl", samples)
    sequence_kl(str(toy["policy"]), str(toy["policy"]), str(tmp_path / "samples.jsonl"), str(toy["prompts"]),
                str(tmp_path / "kl.jsonl"), {"batch_size": 64}, SAMPLING, "float32")
    assert read_jsonl(tmp_path / "kl.jsonl") == [
        {"prompt_id": r["prompt_id"], "sample": r["sample"], "kl": 0.0, "tokens": len(r["tokens"])} for r in samples
    ]


TINY_SAMPLING = dict(backend="hf", n=2, temperature=0.8, top_p=1.0, max_new_tokens=8, batch_size=8, shards=1)


def test_kl_against_a_perturbed_reference_is_positive(tiny_base, prompt_data, tmp_path, one_thread) -> None:
    """On the tiny byte-level BPE model with its ChatML template, as in the workflow."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rmood.generation import sample_shard
    from rmood.rl.kl import sequence_kl

    reference = AutoModelForCausalLM.from_pretrained(tiny_base)
    torch.manual_seed(0)
    with torch.no_grad():
        for weights in (reference.get_input_embeddings().weight, reference.get_output_embeddings().weight):
            weights.add_(0.5 * torch.randn_like(weights))
    reference.save_pretrained(tmp_path / "reference")
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(tmp_path / "reference")
    prompts = str(prompt_data["preference"])
    sample_shard(str(tiny_base), [prompts], str(tmp_path / "samples.jsonl"), 0, 0, TINY_SAMPLING, "float32")  # π's
    sequence_kl(str(tiny_base), str(tmp_path / "reference"), str(tmp_path / "samples.jsonl"), prompts,
                str(tmp_path / "kl.jsonl"), {"batch_size": 8}, TINY_SAMPLING, "float32")
    samples, kl = read_jsonl(tmp_path / "samples.jsonl"), read_jsonl(tmp_path / "kl.jsonl")
    assert [(r["prompt_id"], r["sample"], len(r["tokens"])) for r in samples] == \
        [(r["prompt_id"], r["sample"], r["tokens"]) for r in kl]
    assert len(kl) == 48 and np.mean([r["kl"] for r in kl]) > 0.1
    assert np.mean([r["kl"] / r["tokens"] for r in kl]) > 0.01


def test_response_logprobs_batched_equal_one_at_a_time(tiny_base, prompt_data) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rmood.generation import encode_prompt
    from rmood.rl.kl import response_logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    records = read_jsonl(prompt_data["preference"])[:7]
    prompts = [encode_prompt(tokenizer, r["messages"]) for r in records]
    responses = [tokenizer(r["reference"] * (i % 3), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                 for i, r in enumerate(records)]
    responses[0] = []
    batched = response_logprobs(model, tokenizer, prompts, responses, 3, 0.7)
    single = [response_logprobs(model, tokenizer, [p], [r], 1, 0.7)[0] for p, r in zip(prompts, responses)]
    assert [b.size for b in batched] == list(map(len, responses)) and batched[0].dtype == np.float64
    for b, s in zip(batched, single):
        np.testing.assert_allclose(b, s, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the definition, for one pair
        logits = model(input_ids=torch.tensor([prompts[1] + responses[1]])).logits[0].double()
    logprobs = (logits / 0.7).log_softmax(-1)
    start = len(prompts[1])
    expected = [logprobs[start - 1 + t, token].item() for t, token in enumerate(responses[1])]
    np.testing.assert_allclose(batched[1], expected, rtol=1e-5, atol=1e-5)
