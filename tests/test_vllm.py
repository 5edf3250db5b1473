"""sampling.backend vllm up to the engine call.

The first part needs no vLLM: the mapping of our config to vLLM's arguments (plain dicts), the record
conversion (from plain objects with the fields of vLLM's outputs) and the errors of a main environment.
The second part runs in the real vLLM environment (`.venv-vllm`, or the python in RMOOD_VLLM_PYTHON):
it builds vLLM's own SamplingParams, TokensPrompt, EngineArgs/ModelConfig and RequestOutput from our
mapping, and checks that sampling on a machine without a CUDA GPU stops with our message. Without that
environment those tests are skipped; `make test-vllm` builds it (about 4.3 GB of wheels) and runs them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT
from rmood.generation import BackendError, batch_seed, encode_prompt
from rmood.vllm_sampling import GPU_MISSING, completions, engine_kwargs, request_kwargs, sample_shard_vllm

SAMPLING = dict(backend="vllm", n=3, temperature=0.7, top_p=0.9, max_new_tokens=24, batch_size=4, shards=2,
                vllm=dict(tensor_parallel_size=2, gpu_memory_utilization=0.6, max_model_len=None, enforce_eager=False))
VLLM_PYTHON = Path(os.environ.get("RMOOD_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))


@pytest.fixture(scope="module")
def tokenizer(tiny_base: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base)


# --- the mapping, as plain values ---------------------------------------------------------------


def test_engine_kwargs() -> None:
    assert engine_kwargs("/models/policy", 5, "bfloat16", SAMPLING["vllm"]) == {
        "model": "/models/policy",
        "tokenizer": "/models/policy",
        "dtype": "bfloat16",
        "seed": 5,
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.6,
        "enforce_eager": False,
        "generation_config": "vllm",
    }  # max_model_len null: the model's own
    options = {**SAMPLING["vllm"], "max_model_len": 4096, "enforce_eager": True}
    kwargs = engine_kwargs("/models/policy", 5, "float32", options)
    assert kwargs["max_model_len"] == 4096 and kwargs["enforce_eager"] is True


def test_request_kwargs_map_the_sampling_config() -> None:
    requests = request_kwargs(SAMPLING, eos_token_id=11, seed=1000, prompts=4)
    assert len(requests) == 4
    for request in requests:
        assert {k: v for k, v in request.items() if k != "seed"} == {
            "n": 3,
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": 0,
            "max_tokens": 24,
            "stop_token_ids": [11],
            "skip_special_tokens": True,
            "detokenize": False,
        }


def test_every_sample_of_a_batch_gets_its_own_seed() -> None:
    seed = batch_seed(0, 1, 2)
    requests = request_kwargs(SAMPLING, eos_token_id=11, seed=seed, prompts=5)
    n = SAMPLING["n"]
    assert [r["seed"] for r in requests] == [seed + i * n for i in range(5)]
    # vLLM seeds the k-th of n samples with seed + k: the batch's samples use seed .. seed + 5n - 1, once each
    assert sorted(r["seed"] + k for r in requests for k in range(n)) == list(range(seed, seed + 5 * n))
    assert all(r["seed"] + n < 2**64 for r in requests)  # what vLLM's transport carries
    assert request_kwargs(SAMPLING, 11, seed, 5) == requests


def completion(index: int, token_ids: list[int], finish_reason: str) -> SimpleNamespace:
    """The fields rmood reads of vLLM's CompletionOutput (text stays empty: detokenize is off)."""
    return SimpleNamespace(index=index, text="", token_ids=token_ids, finish_reason=finish_reason)


def test_completions_decode_mark_finished_and_keep_the_tokens(tokenizer) -> None:
    words = tokenizer("reverse the word", add_special_tokens=False)["input_ids"]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    text = tokenizer.decode(words, skip_special_tokens=True)
    outputs = [
        SimpleNamespace(request_id="0", outputs=[completion(1, words, "length"), completion(0, words + [eos], "stop")]),
        SimpleNamespace(request_id="1", outputs=[completion(0, [eos], "stop"),
                                                 completion(1, [pad, *words[:2]], "length")]),
    ]
    assert completions(tokenizer, outputs, 2) == [
        [(text, True, words + [eos]), (text, False, words)],  # in sample order, not in the order vLLM listed them
        [("", True, [eos]), (tokenizer.decode(words[:2], skip_special_tokens=True), False, [pad, *words[:2]])],
    ]


def test_completions_refuse_a_wrong_sample_count(tokenizer) -> None:
    outputs = [SimpleNamespace(request_id="7", outputs=[completion(0, [5], "stop")])]
    with pytest.raises(RuntimeError, match="vLLM returned 1 samples for request 7, expected 2"):
        completions(tokenizer, outputs, 2)


# --- the errors of the main environment ---------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed in this environment")
def test_without_vllm_the_step_says_how_to_get_it(tiny_base: Path, prompt_data, tmp_path: Path) -> None:
    out = tmp_path / "shard.jsonl"
    with pytest.raises(BackendError, match=r"needs the vllm package.*make envs ENVS=vllm.*environments\.vllm"):
        sample_shard_vllm(str(tiny_base), [str(prompt_data["ood"])], str(out), 0, 0, SAMPLING, "float32")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_vllm_step_refuses_the_hf_backend(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="run step sample$"):
        sample_shard_vllm("model", [], str(tmp_path / "out.jsonl"), 0, 0, {**SAMPLING, "backend": "hf"}, "float32")


def test_the_sampling_modules_import_light() -> None:
    """They run inside the vLLM environment too: no heavy import until a step runs."""
    code = ("import sys, rmood.generation, rmood.vllm_sampling\n"
            "heavy = {'torch', 'transformers', 'vllm', 'tqdm', 'numpy'} & set(sys.modules)\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_conda_file_has_the_pins_of_the_requirements_file() -> None:
    import yaml

    pins = [line for line in (ROOT / "envs" / "vllm.txt").read_text().splitlines() if line and not line.startswith("#")]
    conda = yaml.safe_load((ROOT / "envs" / "vllm.yml").read_text())
    pip = next(item["pip"] for item in conda["dependencies"] if isinstance(item, dict))
    assert pip == pins
    assert all("==" in pin for pin in pins) and "python=3.11" in conda["dependencies"]


# --- in the real vLLM environment ---------------------------------------------------------------

PROBE = """
import dataclasses, json, sys, types
from vllm import SamplingParams, TokensPrompt
from vllm.engine.arg_utils import EngineArgs
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.v1.engine.parallel_sampling import ParentRequest
from transformers import AutoTokenizer
from rmood.generation import BackendError, encode_prompt
from rmood.vllm_sampling import completions, engine_kwargs, request_kwargs, sample_shard_vllm

args = json.loads(sys.argv[1])
sampling, model = args["sampling"], args["model"]
report = {}
tokenizer = AutoTokenizer.from_pretrained(model)
report["prompt"] = dict(TokensPrompt(prompt_token_ids=encode_prompt(tokenizer, args["messages"])))

params = [SamplingParams(**kwargs) for kwargs in request_kwargs(sampling, tokenizer.eos_token_id, args["seed"], 2)]
fields = ("n", "temperature", "top_p", "top_k", "min_p", "max_tokens", "seed", "stop_token_ids", "ignore_eos",
          "detokenize", "skip_special_tokens", "repetition_penalty", "presence_penalty", "frequency_penalty")
report["params"] = [{f: getattr(p, f) for f in fields} for p in params]
parents = [ParentRequest(types.SimpleNamespace(request_id=str(i), external_req_id=str(i), params=p))
           for i, p in enumerate(params)]
report["child_seeds"] = [[parent.get_child_info(k)[1].seed for k in range(p.n)] for parent, p in zip(parents, params)]

engine = EngineArgs(**engine_kwargs(model, args["seed"], "float32", {**sampling["vllm"], "max_model_len": 64}))
config = engine.create_model_config()
report["engine"] = {"model": config.model, "tokenizer": config.tokenizer, "dtype": str(config.dtype),
                    "seed": config.seed, "max_model_len": config.max_model_len,
                    "generation_config": config.generation_config,
                    "sampling_defaults": config.get_diff_sampling_param(),
                    "tensor_parallel_size": engine.tensor_parallel_size,
                    "gpu_memory_utilization": engine.gpu_memory_utilization, "enforce_eager": engine.enforce_eager}

eos, words = tokenizer.eos_token_id, args["words"]
outputs = [RequestOutput("0", None, [1, 2], None, [
    CompletionOutput(1, "", words[:2], None, None, finish_reason="length"),
    CompletionOutput(0, "", words + [eos], None, None, finish_reason="stop", stop_reason=None),
], finished=True)]
report["completions"] = completions(tokenizer, outputs, 2)

try:
    sample_shard_vllm(model, args["prompt_files"], args["out"], 0, args["seed"], sampling, "float32")
    report["error"] = None
except BackendError as error:
    report["error"] = str(error)
print("REPORT " + json.dumps(report))
"""


@pytest.fixture(scope="module")
def probe(tiny_base: Path, prompt_data, tokenizer, tmp_path_factory) -> dict:
    """What the real vLLM makes of our mapping (one interpreter start: importing vLLM takes a while)."""
    if not VLLM_PYTHON.exists():
        pytest.skip(f"no vLLM environment at {VLLM_PYTHON}: make test-vllm builds .venv-vllm from envs/vllm.txt")
    out = tmp_path_factory.mktemp("vllm") / "shard.jsonl"
    args = {"sampling": {**SAMPLING, "vllm": {**SAMPLING["vllm"], "tensor_parallel_size": 1}}, "model": str(tiny_base),
            "seed": 2**62 + 5, "messages": [{"role": "user", "content": "sort 3 1 2"}],
            "words": tokenizer("sort the list", add_special_tokens=False)["input_ids"],
            "prompt_files": [str(prompt_data["ood"])], "out": str(out)}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a GPU machine
    result = subprocess.run([str(VLLM_PYTHON), "-c", PROBE, json.dumps(args)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))
    return {**json.loads(line[len("REPORT "):]), "args": args, "written": sorted(p.name for p in out.parent.iterdir())}


def test_vllm_takes_our_chat_template_token_ids(probe: dict, tokenizer) -> None:
    messages = probe["args"]["messages"]
    assert probe["prompt"] == {"prompt_token_ids": encode_prompt(tokenizer, messages)}


def test_vllm_sampling_params_carry_our_config(probe: dict, tokenizer) -> None:
    seed = probe["args"]["seed"]
    assert probe["params"] == [
        {"n": 3, "temperature": 0.7, "top_p": 0.9, "top_k": 0, "min_p": 0.0, "max_tokens": 24, "seed": seed + 3 * i,
         "stop_token_ids": [tokenizer.eos_token_id], "ignore_eos": False, "detokenize": False,
         "skip_special_tokens": True, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
        for i in range(2)
    ]
    assert probe["child_seeds"] == [[seed + 3 * i + k for k in range(3)] for i in range(2)]


def test_vllm_engine_args_carry_our_config(probe: dict, tiny_base: Path) -> None:
    assert probe["engine"] == {
        "model": str(tiny_base),
        "tokenizer": str(tiny_base),
        "dtype": "torch.float32",
        "seed": 2**62 + 5,
        "max_model_len": 64,
        "generation_config": "vllm",
        "sampling_defaults": {},  # none of the model's generation_config.json sampling defaults
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.6,
        "enforce_eager": False,
    }


def test_vllm_request_outputs_become_records(probe: dict, tokenizer) -> None:
    words, eos = probe["args"]["words"], tokenizer.eos_token_id
    assert probe["completions"] == [[[tokenizer.decode(words, skip_special_tokens=True), True, words + [eos]],
                                     [tokenizer.decode(words[:2], skip_special_tokens=True), False, words[:2]]]]


def test_without_a_gpu_vllm_sampling_stops_with_our_message(probe: dict) -> None:
    assert probe["error"] == GPU_MISSING
    assert probe["written"] == []  # checked before anything is read or written
