"""Sampling bookkeeping without a model: shards, batch seeds, resuming from a partial file, gathering, and the
loop both backends share (`sample_prompts`), driven by a plain engine call instead of a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmood.generation import (
    SAMPLE_FIELDS,
    BackendError,
    batch_seed,
    completed_records,
    encode_prompt,
    gather,
    require_backend,
    response_text,
    sample_prompts,
    sampled_response,
    shard_batches,
    shard_prompts,
)
from rmood.io import DataError, dumps, read_jsonl, write_jsonl


def prompt(pid: str) -> dict:
    return {"id": pid, "messages": [{"role": "user", "content": pid}]}


def sample(pid: str, k: int, text: str | None = None) -> dict:
    return {"prompt_id": pid, "sample": k, "response": text or f"{pid}-{k}", "finished": True, "tokens": [k, 2]}


@pytest.fixture
def prompt_files(tmp_path: Path) -> list[str]:
    write_jsonl(tmp_path / "a.jsonl", [prompt(f"a{i}") for i in range(7)])
    write_jsonl(tmp_path / "b.jsonl", [prompt(f"b{i}") for i in range(4)])
    return [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]


# --- shard_prompts ------------------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 2, 3, 5, 11, 13])
def test_shards_partition_the_prompts(prompt_files: list[str], shards: int) -> None:
    every = [p["id"] for path in prompt_files for p in read_jsonl(path)]
    parts = [[p["id"] for p in shard_prompts(prompt_files, shard, shards)] for shard in range(shards)]
    flat = [pid for part in parts for pid in part]
    assert sorted(flat) == sorted(every)  # every prompt exactly once
    assert len(flat) == len(set(flat))
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1  # round robin: balanced
    for shard, part in enumerate(parts):
        assert part == every[shard::shards]  # round robin over the concatenated files, order kept


def test_shard_records_are_whole(prompt_files: list[str]) -> None:
    assert shard_prompts(prompt_files, 0, 2)[0] == prompt("a0")


@pytest.mark.parametrize(("shard", "shards"), [(-1, 2), (2, 2), (5, 2), (0, 0)])
def test_bad_shard_index(prompt_files: list[str], shard: int, shards: int) -> None:
    with pytest.raises(ValueError, match=f"shard {shard}"):
        shard_prompts(prompt_files, shard, shards)


# --- batch_seed ---------------------------------------------------------------------------------


def test_batch_seed_is_deterministic_and_distinct() -> None:
    assert batch_seed(0, 1, 2) == batch_seed(0, 1, 2)
    seeds = {batch_seed(seed, shard, batch) for seed in range(3) for shard in range(4) for batch in range(10)}
    assert len(seeds) == 3 * 4 * 10
    assert batch_seed(0, 1, 2) != batch_seed(0, 2, 1)
    assert batch_seed(1, 23, 4) != batch_seed(12, 3, 4)  # no ambiguity from concatenating digits


def test_batch_seed_range() -> None:
    for args in [(0, 0, 0), (2**40, 7, 3), (5, 0, 999)]:
        value = batch_seed(*args)
        assert isinstance(value, int) and 0 <= value < 2**63


# --- completed_records --------------------------------------------------------------------------


@pytest.fixture
def batches() -> list[list[dict]]:
    return [[prompt("p0"), prompt("p1")], [prompt("p2"), prompt("p3")], [prompt("p4")]]


def write_lines(path: Path, records: list[dict], tail: str = "") -> None:
    path.write_text("".join(dumps(r) + "\n" for r in records) + tail, encoding="utf-8")


def test_completed_records_missing_file(tmp_path: Path, batches: list[list[dict]]) -> None:
    assert completed_records(tmp_path / "absent.partial", batches, 2) == ([], set())


def test_completed_records_keeps_whole_batches_only(tmp_path: Path, batches: list[list[dict]]) -> None:
    path = tmp_path / "out.partial"
    done_batch = [sample("p0", 0), sample("p0", 1), sample("p1", 0), sample("p1", 1)]
    half_batch = [sample("p2", 0), sample("p2", 1), sample("p3", 0)]  # p3 is missing a sample
    write_lines(path, done_batch + half_batch)
    kept, done = completed_records(path, batches, 2)
    assert done == {0}
    assert kept == done_batch


def test_completed_records_all_done_out_of_order(tmp_path: Path, batches: list[list[dict]]) -> None:
    path = tmp_path / "out.partial"
    batch2 = [sample("p4", 0)]
    batch0 = [sample("p0", 0), sample("p1", 0)]
    write_lines(path, batch2 + batch0)
    kept, done = completed_records(path, batches, 1)
    assert done == {0, 2}
    assert kept == batch0 + batch2  # in batch order


def test_completed_records_ignores_a_truncated_last_line(tmp_path: Path, batches: list[list[dict]]) -> None:
    path = tmp_path / "out.partial"
    complete = [sample("p0", 0), sample("p1", 0), sample("p2", 0)]
    last = dumps(sample("p3", 0))  # valid JSON, but the newline never made it to disk
    write_lines(path, complete, tail=last)
    kept, done = completed_records(path, batches, 1)
    assert done == {0}
    assert kept == complete[:2]


def test_completed_records_ignores_a_malformed_last_line(tmp_path: Path, batches: list[list[dict]]) -> None:
    path = tmp_path / "out.partial"
    complete = [sample("p0", 0), sample("p1", 0), sample("p2", 0)]
    write_lines(path, complete, tail='{"prompt_id": "p3", "sam\n')
    kept, done = completed_records(path, batches, 1)
    assert done == {0}
    assert kept == complete[:2]


def test_completed_records_cut_mid_character(tmp_path: Path, batches: list[list[dict]]) -> None:
    path = tmp_path / "out.partial"
    good = "".join(dumps(r) + "\n" for r in [sample("p0", 0), sample("p1", 0)]).encode()
    cut = '{"prompt_id": "p2", "response": "日本'.encode()[:-1]  # a buffered write stopped inside 本
    path.write_bytes(good + cut)
    kept, done = completed_records(path, batches, 1)
    assert done == {0}
    assert kept == [sample("p0", 0), sample("p1", 0)]


def test_completed_records_without_tokens_are_sampled_again(tmp_path: Path, batches: list[list[dict]]) -> None:
    """Records of a sampler that kept no token ids (older rmood) count as unfinished: the shard is resampled."""
    path = tmp_path / "out.partial"
    old = [{k: v for k, v in sample(pid, 0).items() if k != "tokens"} for pid in ("p2", "p3")]
    write_lines(path, [sample("p0", 0), sample("p1", 0)] + old)
    kept, done = completed_records(path, batches, 1)
    assert done == {0} and kept == [sample("p0", 0), sample("p1", 0)]
    write_lines(path, old + [sample("p0", 0), sample("p1", 0)])
    assert completed_records(path, batches, 1) == ([], set())


def test_completed_records_extra_samples_do_not_count(tmp_path: Path, batches: list[list[dict]]) -> None:
    path = tmp_path / "out.partial"
    write_lines(path, [sample("p0", 0), sample("p0", 1), sample("p1", 0)])
    _, done = completed_records(path, batches, 1)
    assert done == set()  # p0 has 2 records, not n = 1


# --- gather -------------------------------------------------------------------------------------


def test_gather_sorts_by_prompt_order_then_sample(tmp_path: Path, prompt_files: list[str]) -> None:
    order = [p["id"] for path in prompt_files for p in read_jsonl(path)]
    shard0 = [sample(pid, k) for pid in order[0::2] for k in (1, 0)]
    shard1 = [sample(pid, k) for pid in reversed(order[1::2]) for k in (0, 1)]
    write_jsonl(tmp_path / "s0.jsonl", shard0)
    write_jsonl(tmp_path / "s1.jsonl", shard1)
    out = tmp_path / "samples.jsonl"
    gather([str(tmp_path / "s1.jsonl"), str(tmp_path / "s0.jsonl")], prompt_files, str(out))
    records = read_jsonl(out)
    assert [(r["prompt_id"], r["sample"]) for r in records] == [(pid, k) for pid in order for k in (0, 1)]
    assert records[0] == sample(order[0], 0)


def test_gather_is_independent_of_the_shard_count(tmp_path: Path, prompt_files: list[str]) -> None:
    order = [p["id"] for path in prompt_files for p in read_jsonl(path)]
    everything = [sample(pid, k) for pid in order for k in range(3)]
    outputs = []
    for shards in (1, 3):
        paths = []
        for shard in range(shards):
            ids = set(order[shard::shards])
            path = tmp_path / f"{shards}-{shard}.jsonl"
            write_jsonl(path, [r for r in everything if r["prompt_id"] in ids])
            paths.append(str(path))
        out = tmp_path / f"gathered-{shards}.jsonl"
        gather(paths, prompt_files, str(out))
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert [json.loads(line) for line in outputs[0].decode().splitlines()] == everything


def test_gather_unknown_prompt_id(tmp_path: Path, prompt_files: list[str]) -> None:
    write_jsonl(tmp_path / "s0.jsonl", [sample("a0", 0), sample("zz-unknown", 0)])
    out = tmp_path / "samples.jsonl"
    with pytest.raises(DataError, match="zz-unknown"):
        gather([str(tmp_path / "s0.jsonl")], prompt_files, str(out))
    assert not out.exists()


def test_gather_requires_per_sample_records(tmp_path: Path, prompt_files: list[str]) -> None:
    write_jsonl(tmp_path / "s0.jsonl", [{"prompt_id": "a0", "response": "x"}])
    with pytest.raises(DataError, match=r"s0\.jsonl:1: missing field\(s\) sample"):
        gather([str(tmp_path / "s0.jsonl")], prompt_files, str(tmp_path / "out.jsonl"))


def test_gather_orders_labels_too(tmp_path: Path, prompt_files: list[str]) -> None:
    ids = [r["id"] for path in prompt_files for r in read_jsonl(path)][:3]
    write_jsonl(tmp_path / "l0.jsonl", [{"prompt_id": ids[2], "sample": 0, "gold": 0.5}])
    write_jsonl(tmp_path / "l1.jsonl", [{"prompt_id": ids[0], "sample": 1, "gold": 0.1},
                                        {"prompt_id": ids[0], "sample": 0, "gold": 0.2}])
    gather([str(tmp_path / "l0.jsonl"), str(tmp_path / "l1.jsonl")], prompt_files, str(tmp_path / "out.jsonl"))
    assert [(r["prompt_id"], r["sample"], r["gold"]) for r in read_jsonl(tmp_path / "out.jsonl")] == \
        [(ids[0], 0, 0.2), (ids[0], 1, 0.1), (ids[2], 0, 0.5)]


# --- the loop both backends share ---------------------------------------------------------------

SAMPLING = dict(backend="hf", n=3, temperature=1.0, top_p=1.0, max_new_tokens=8, batch_size=3, shards=2)


@pytest.fixture(scope="module")
def tokenizer(tiny_base: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base)


@pytest.fixture
def synthetic_files(prompt_data: dict[str, Path]) -> list[str]:
    return [str(prompt_data["preference"]), str(prompt_data["ood"])]


class Engine:
    """A deterministic engine call (no model): sample k of a prompt reads '<batch seed>/<prompt length>/<k>', its
    tokens are [prompt length, k]. It records its calls; `start` counts how often the backend was started."""

    def __init__(self, n: int) -> None:
        self.n, self.calls, self.starts = n, [], 0

    def start(self):
        self.starts += 1
        return self.generate

    def generate(self, prompts: list[list[int]], seed: int) -> list[list[tuple[str, bool, list[int]]]]:
        self.calls.append((prompts, seed))
        return [[(f"{seed}/{len(p)}/{k}", k % 2 == 0, [len(p), k]) for k in range(self.n)] for p in prompts]


def test_shard_batches_sort_by_prompt_length(tokenizer, synthetic_files: list[str]) -> None:
    batches = shard_batches(tokenizer, synthetic_files, 1, SAMPLING)
    flat = [item for batch in batches for item in batch]
    assert [p["id"] for p, _ in sorted(flat, key=lambda item: item[0]["id"])] == \
        sorted(p["id"] for p in shard_prompts(synthetic_files, 1, 2))
    assert all(tokens == encode_prompt(tokenizer, p["messages"]) for p, tokens in flat)
    assert [len(tokens) for _, tokens in flat] == sorted(len(tokens) for _, tokens in flat)
    assert [len(batch) for batch in batches[:-1]] == [SAMPLING["batch_size"]] * (len(batches) - 1)


def test_prompts_longer_than_the_context_are_skipped_and_counted(tokenizer, synthetic_files, tmp_path, capsys) -> None:
    lengths = sorted(len(t) for batch in shard_batches(tokenizer, synthetic_files, 1, SAMPLING) for _, t in batch)
    limit = lengths[len(lengths) // 2]  # about half the prompts fit
    context = limit + SAMPLING["max_new_tokens"]
    out = tmp_path / "shard.jsonl"
    sample_prompts(tokenizer, synthetic_files, str(out), 1, 7, SAMPLING, Engine(SAMPLING["n"]).start, context)
    skipped = sum(length > limit for length in lengths)
    assert 0 < skipped < len(lengths)
    assert f"sampling shard 1: skipped {skipped} of {len(lengths)} prompts longer than {limit} tokens" in capsys.readouterr().out
    assert len({r["prompt_id"] for r in read_jsonl(out)}) == len(lengths) - skipped


def test_sample_prompts_seeds_each_batch_and_writes_the_records(tokenizer, synthetic_files, tmp_path) -> None:
    engine = Engine(SAMPLING["n"])
    out = tmp_path / "shard.jsonl"
    sample_prompts(tokenizer, synthetic_files, str(out), 1, 7, SAMPLING, engine.start)
    batches = shard_batches(tokenizer, synthetic_files, 1, SAMPLING)
    assert engine.starts == 1
    assert engine.calls == [([t for _, t in batch], batch_seed(7, 1, i)) for i, batch in enumerate(batches)]
    expected = [
        {"prompt_id": p["id"], "sample": k, "response": f"{batch_seed(7, 1, i)}/{len(t)}/{k}", "finished": k % 2 == 0,
         "tokens": [len(t), k]}
        for i, batch in enumerate(batches) for p, t in batch for k in range(SAMPLING["n"])
    ]
    assert out.read_text(encoding="utf-8") == "".join(dumps(r) + "\n" for r in expected)
    assert all(tuple(sorted(r)) == tuple(sorted(SAMPLE_FIELDS)) for r in read_jsonl(out))
    assert not out.with_name(out.name + ".partial").exists()


def test_sample_prompts_resumes_only_the_unfinished_batches(tokenizer, synthetic_files, tmp_path) -> None:
    full = tmp_path / "full.jsonl"
    sample_prompts(tokenizer, synthetic_files, str(full), 0, 7, SAMPLING, Engine(SAMPLING["n"]).start)
    lines = full.read_text(encoding="utf-8").splitlines(keepends=True)
    per_batch = SAMPLING["batch_size"] * SAMPLING["n"]

    out = tmp_path / "resumed.jsonl"
    partial = out.with_name(out.name + ".partial")
    # batch 0 done, batch 1 half written and cut mid-line
    partial.write_text("".join(lines[: per_batch + 4]) + lines[per_batch + 4][:9], encoding="utf-8")
    engine = Engine(SAMPLING["n"])
    sample_prompts(tokenizer, synthetic_files, str(out), 0, 7, SAMPLING, engine.start)
    batches = shard_batches(tokenizer, synthetic_files, 0, SAMPLING)
    assert [seed for _, seed in engine.calls] == [batch_seed(7, 0, i) for i in range(1, len(batches))]
    assert out.read_bytes() == full.read_bytes()
    assert not partial.exists()


def test_sample_prompts_with_every_batch_done_starts_no_engine(tokenizer, synthetic_files, tmp_path) -> None:
    full = tmp_path / "full.jsonl"
    sample_prompts(tokenizer, synthetic_files, str(full), 0, 7, SAMPLING, Engine(SAMPLING["n"]).start)
    out = tmp_path / "out.jsonl"
    out.with_name(out.name + ".partial").write_bytes(full.read_bytes())  # killed between the last write and the rename
    engine = Engine(SAMPLING["n"])
    sample_prompts(tokenizer, synthetic_files, str(out), 0, 7, SAMPLING, engine.start)
    assert engine.starts == 0 and engine.calls == []
    assert out.read_bytes() == full.read_bytes()


def test_sample_prompts_refuses_a_short_answer(tokenizer, synthetic_files, tmp_path) -> None:
    def start():
        return lambda prompts, seed: [[("x", True, [1])] * SAMPLING["n"]] * (len(prompts) - 1)  # one prompt short

    with pytest.raises(ValueError, match="zip"):
        sample_prompts(tokenizer, synthetic_files, str(tmp_path / "out.jsonl"), 0, 7, SAMPLING, start)
    assert not (tmp_path / "out.jsonl").exists()


def test_response_text_stops_at_the_first_eos(tokenizer) -> None:
    words = tokenizer("sort the list", add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    assert response_text(tokenizer, words) == tokenizer.decode(words, skip_special_tokens=True)
    assert response_text(tokenizer, words + [eos] + words) == tokenizer.decode(words, skip_special_tokens=True)
    assert response_text(tokenizer, [eos] + words) == ""


def test_sampled_response_keeps_the_tokens_up_to_the_first_eos(tokenizer) -> None:
    words = tokenizer("sort the list", add_special_tokens=False)["input_ids"]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    text = tokenizer.decode(words, skip_special_tokens=True)
    assert sampled_response(tokenizer, words + [eos, pad, pad], True) == (text, True, words + [eos])  # padding dropped
    assert sampled_response(tokenizer, words + [eos, *words, eos], True) == (text, True, words + [eos])
    assert sampled_response(tokenizer, [pad, *words, pad], False) == (text, False, [pad, *words, pad])  # pads drawn
    assert sampled_response(tokenizer, [eos], True) == ("", True, [eos])


def test_each_step_refuses_the_other_backend() -> None:
    require_backend({"backend": "hf"}, "hf", "sample")
    with pytest.raises(BackendError, match="sample samples with sampling.backend hf, not 'vllm': run step sample_vllm"):
        require_backend({"backend": "vllm"}, "hf", "sample")
    with pytest.raises(BackendError, match="run step sample$"):
        require_backend({"backend": "hf"}, "vllm", "sample_vllm")
