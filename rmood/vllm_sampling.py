"""sampling.backend vllm: the engine call of rmood.generation's sampling loop, with vLLM (CUDA GPUs only).

Step `sample_vllm` runs in the vLLM environment (`environments.vllm`, built from envs/vllm.txt or
envs/vllm.yml), so this module imports only vLLM's own stack and light rmood modules, the heavy ones
inside functions. Shards, batches, batch seeds, resuming and the records are rmood.generation's, shared
with the hf backend. What is vLLM's:

- the prompts go in as token ids rendered by the policy tokenizer's chat template (`encode_prompt`), as
  for hf, so vLLM applies no template of its own;
- prompt i of batch b asks for n samples with seed batch_seed(seed, shard, b) + i·n, and vLLM seeds the
  k-th of the n samples with seed + k: every sample has its own random stream, whatever else vLLM
  schedules beside it;
- the response text is decoded by rmood from the output token ids, which the record keeps as `tokens`
  (`sampled_response`, exactly as for hf; vLLM's token ids end with the stop token that ended them);
  `finished` means vLLM stopped at an end-of-sequence token (finish_reason "stop"), not at
  max_new_tokens or the context length ("length"). vLLM stops at the tokenizer's eos and at any eos id
  the model's generation_config.json lists; hf stops at the tokenizer's eos only.

The samples differ from hf's (other kernels, other random streams). Whether a rerun is bit-identical on
the GPU is up to vLLM's kernels (VLLM_BATCH_INVARIANT=1 asks for batch-invariant ones); the seeds are.
The pure parts (`engine_kwargs`, `request_kwargs`, `completions`) take and return plain values, so they
are tested without vLLM or a GPU.
"""

from __future__ import annotations

import sys
from typing import Any

from rmood.generation import BackendError, Engine, Response, require_backend, sample_prompts, sampled_response

GPU_MISSING = "vLLM needs a CUDA GPU; use sampling.backend: hf on CPU"


def engine_kwargs(model: str, seed: int, dtype: str, options: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM` for a policy directory and the `sampling.vllm` options."""
    kwargs = {
        "model": model,
        "tokenizer": model,
        "dtype": dtype,
        "seed": seed,
        "tensor_parallel_size": options["tensor_parallel_size"],
        "gpu_memory_utilization": options["gpu_memory_utilization"],
        "enforce_eager": options["enforce_eager"],
        "generation_config": "vllm",  # vLLM's neutral sampling defaults, not the model's
    }
    if options["max_model_len"] is not None:
        kwargs["max_model_len"] = options["max_model_len"]
    return kwargs


def request_kwargs(sampling: dict[str, Any], eos_token_id: int, seed: int, prompts: int) -> list[dict[str, Any]]:
    """Keyword arguments of `vllm.SamplingParams` for each of `prompts` prompts of a batch seeded `seed`."""
    n = sampling["n"]
    common = {
        "n": n,
        "temperature": sampling["temperature"],
        "top_p": sampling["top_p"],
        "top_k": 0,  # off, as for hf
        "max_tokens": sampling["max_new_tokens"],
        "stop_token_ids": [eos_token_id],
        "skip_special_tokens": True,
        "detokenize": False,  # rmood decodes the token ids itself (response_text), as for hf
    }
    return [{**common, "seed": seed + i * n} for i in range(prompts)]


def completions(tokenizer, outputs: list[Any], n: int) -> list[list[Response]]:
    """(text, finished, tokens) of the n samples of each prompt, from vLLM's RequestOutputs (one per prompt, in
    order)."""
    results = []
    for output in outputs:
        samples = sorted(output.outputs, key=lambda completion: completion.index)
        if len(samples) != n:
            raise RuntimeError(f"vLLM returned {len(samples)} samples for request {output.request_id}, expected {n}")
        results.append([sampled_response(tokenizer, list(c.token_ids), c.finish_reason == "stop") for c in samples])
    return results


def check_gpus(tensor_parallel_size: int) -> None:
    """Refuse to start vLLM without vLLM or without enough CUDA GPUs, saying what to do instead."""
    try:
        import torch
        import vllm  # noqa: F401
    except ImportError as error:
        raise BackendError(
            f"sampling.backend: vllm needs the vllm package, which {sys.executable} lacks ({error}); build its "
            "environment (make envs ENVS=vllm, or conda env create -f envs/vllm.yml) and set environments.vllm "
            "to that environment's python"
        ) from error
    if not torch.cuda.is_available():
        raise BackendError(GPU_MISSING)
    if torch.cuda.device_count() < tensor_parallel_size:
        raise BackendError(f"sampling.vllm.tensor_parallel_size is {tensor_parallel_size} but this job sees "
                           f"{torch.cuda.device_count()} CUDA GPU(s); ask resources.sample.gpus for as many")


def sample_shard_vllm(
    model: str, prompt_files: list[str], out: str, shard: int, seed: int, sampling: dict[str, Any], dtype: str
) -> None:
    """Step `sample_vllm` (sampling.backend vllm): `sampling.n` responses per prompt of one shard with vLLM."""
    require_backend(sampling, "vllm", "sample_vllm")
    check_gpus(sampling["vllm"]["tensor_parallel_size"])
    from transformers import AutoConfig, AutoTokenizer

    from rmood.data.prompts import context_length

    tokenizer = AutoTokenizer.from_pretrained(model)
    context = sampling["vllm"]["max_model_len"] or context_length(AutoConfig.from_pretrained(model), tokenizer)
    sample_prompts(tokenizer, prompt_files, out, shard, seed, sampling,
                   lambda: vllm_engine(model, tokenizer, seed, sampling, dtype), context)


def vllm_engine(model: str, tokenizer, seed: int, sampling: dict[str, Any], dtype: str) -> Engine:
    """Start vLLM on the policy; its engine call sends one batch of token-id prompts with per-prompt seeds."""
    from vllm import LLM, SamplingParams, TokensPrompt

    llm = LLM(**engine_kwargs(model, seed, dtype, sampling["vllm"]))

    def generate(prompts: list[list[int]], batch_seed: int) -> list[list[Response]]:
        params = [SamplingParams(**kwargs) for kwargs in request_kwargs(sampling, tokenizer.eos_token_id, batch_seed,
                                                                         len(prompts))]
        outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        return completions(tokenizer, outputs, sampling["n"])

    return generate
