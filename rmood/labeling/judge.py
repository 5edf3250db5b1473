"""An LLM judge behind any OpenAI-compatible endpoint (`vllm serve`, a hosted API, `transformers serve`).

Two tasks, each a prompt template in a file (`judge.pointwise.template`, `judge.pairwise.template`):

- **pointwise** (`gold.source: judge`): the gold score of one response, answered `Score: N` with N an integer
  from 0 to 10 and read as N/10;
- **pairwise** (`annotator.source: judge`): AlpacaFarm's preference between `Output (a)` and `Output (b)`, asked in
  both orders; a pair gets a label only when both orders prefer the same response (position bias cancels).

Templates use alpaca_eval's prompt format, so its prompt files drop in: ChatML text (`<|im_start|>role` …
`<|im_end|>` blocks; plain text is one user message) with the fields `{instruction}` and `{output}`, or
`{output_1}` and `{output_2}`. Answers are parsed strictly: the whole answer (stripped) must be one accepted form
(`Score: 7` or `7`; `Output (a)`, `(a)` or `a`), anything else is asked again, and after `judge.retries` more
tries it is one error naming the endpoint and the request.

Requests run `judge.concurrency` at a time; the openai client retries 408/409/429/5xx answers and connection
errors `judge.retries` times with exponential backoff (0.5 s doubling to 8 s, honouring Retry-After) and gives up
on a request after `judge.timeout` seconds. Every parsed answer is appended (flushed and fsynced) to a JSONL cache
beside the step's output, keyed by the sha256 of the request body (model, messages, sampling parameters, extra
fields; not the endpoint or the key), so a killed job resumes and a rerun with a complete cache sends nothing.
The API key is read from the environment variable named by `judge.api_key_env` and redacted from every error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from rmood.config import template_path
from rmood.credentials import from_env, redact
from rmood.io import DataError, complete_records, dumps, write_jsonl
from rmood.labeling.templates import Message, Template, load_template

SCORE = re.compile(r"(?:Score: *)?(10|[0-9])")
PREFERENCE = re.compile(r"(?:Output )?\(([ab])\)|([ab])")
NO_KEY = "EMPTY"  # sent when judge.api_key_env is null (vLLM without --api-key ignores it), never OPENAI_API_KEY


class JudgeError(RuntimeError):
    """The judge could not answer: one line naming the endpoint and the request, never the key."""


class ParseError(ValueError):
    """An answer that is not in the task's format."""


def parse_score(answer: str) -> float:
    """`Score: N` (or just `N`), N an integer from 0 to 10, as N/10."""
    match = SCORE.fullmatch(answer.strip())
    if match is None:
        raise ParseError("expected 'Score: N' with N an integer from 0 to 10")
    return int(match[1]) / 10


def parse_preference(answer: str) -> int:
    """`Output (a)` (or `(a)`, `a`) as 0, `Output (b)` as 1."""
    match = PREFERENCE.fullmatch(answer.strip())
    if match is None:
        raise ParseError("expected 'Output (a)' or 'Output (b)'")
    return "ab".index(match[1] or match[2])


PARSERS: dict[str, Callable[[str], Any]] = {"pointwise": parse_score, "pairwise": parse_preference}


def instruction(messages: list[Message]) -> str:
    """The prompt as the judge reads it: the one message's text, or every turn as `role: text`."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


@dataclass(frozen=True)
class Request:
    """One chat-completion request: `id` names it in errors and in the cache; `body` is what is sent."""

    id: str
    body: dict[str, Any]

    @cached_property
    def key(self) -> str:
        """sha256 of the canonical JSON of the body: the cache key."""
        canonical = json.dumps(self.body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def cache_beside(out: str | Path) -> Path:
    """The answer cache of the step writing `out`: `<out>.cache.jsonl`."""
    out = Path(out)
    return out.with_name(out.name + ".cache.jsonl")


class AnswerCache:
    """Answers by request key, from a JSONL file of `{key, id, answer}` records; new ones are appended durably."""

    def __init__(self, path: Path) -> None:
        records = complete_records(path, required=("key", "answer")) if path.exists() else []
        write_jsonl(path, records)  # drop the line a killed run may have left half-written
        self.path = path
        self.answers = {r["key"]: r["answer"] for r in records}

    def add(self, request: Request, answer: str) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(dumps({"key": request.key, "id": request.id, "answer": answer}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.answers[request.key] = answer


def retried(error: Exception) -> bool:
    """Whether the openai client retries this error (connection, timeout, 408, 409, 429, 5xx)."""
    from openai import APIConnectionError, APIStatusError

    return isinstance(error, APIConnectionError) or (
        isinstance(error, APIStatusError) and (error.status_code in (408, 409, 429) or error.status_code >= 500)
    )


class Judge:
    """The judge of `settings` (config `judge`), caching its answers in `cache`."""

    def __init__(self, settings: dict[str, Any], cache: str | Path) -> None:
        self.settings = settings
        self.endpoint = settings["base_url"]
        self.cache_path = Path(cache)
        self.key = ""  # the API key once read: redacted from every message
        self.templates: dict[str, Template] = {}

    def request(self, task: str, id: str, **fields: str) -> Request:
        """The request of `task` with the template's fields filled in."""
        s = self.settings
        if task not in self.templates:
            self.templates[task] = load_template(template_path(s[task]["template"]), task)
        return Request(id, {"model": s["model"], "messages": self.templates[task].render(**fields),
                            "temperature": s["temperature"], "max_tokens": s["max_tokens"], **s[task]["request"]})

    def score(self, items: Sequence[tuple[str, list[Message], str]]) -> list[float]:
        """The pointwise gold score in [0, 1] of each (id, prompt messages, response)."""
        requests = [self.request("pointwise", id, instruction=instruction(messages), output=response)
                    for id, messages, response in items]
        return self.answer("pointwise", requests)

    def prefer(self, items: Sequence[tuple[str, list[Message], str, str]]) -> list[int | None]:
        """For each (id, prompt messages, response x, response y): 0 when both orders prefer x, 1 when both prefer
        y, None when the two orders disagree (the judge followed the position); prints how often each happened."""
        requests = []
        for id, messages, x, y in items:
            text = instruction(messages)
            requests += [self.request("pairwise", f"{id}/xy", instruction=text, output_1=x, output_2=y),
                         self.request("pairwise", f"{id}/yx", instruction=text, output_1=y, output_2=x)]
        answers = self.answer("pairwise", requests)
        # xy answers 0 (a) for x; yx answers 1 (b) for x: the orders agree exactly when the answers differ
        labels = [xy if xy != yx else None for xy, yx in zip(answers[::2], answers[1::2])]
        positions = Counter("ab"[xy] for xy, yx in zip(answers[::2], answers[1::2]) if xy == yx)
        print(f"judge pairwise: {len(labels)} pairs, {labels.count(None)} without a label (both orders chose the "
              f"same position: Output (a) {positions['a']}, Output (b) {positions['b']})", flush=True)
        return labels

    def answer(self, task: str, requests: list[Request]) -> list[Any]:
        """The parsed answer to every request: from the cache, else asked (`judge.concurrency` at a time)."""
        parse = PARSERS[task]
        cache = AnswerCache(self.cache_path)
        values: dict[str, Any] = {}
        for request in requests:
            if request.key in cache.answers:
                try:
                    values[request.key] = parse(cache.answers[request.key])
                except ParseError:
                    pass  # cached under another parser: ask again
        todo = list({r.key: r for r in requests if r.key not in values}.values())
        print(f"judge {task}: {len(requests)} requests, {len(values)} answered from {cache.path}, asking {len(todo)} "
              f"at {self.endpoint}", flush=True)
        if todo:
            start = time.monotonic()
            values |= self.ask_all(todo, parse, cache)
            print(f"judge {task}: {len(todo)} answers in {time.monotonic() - start:.1f} s", flush=True)
        return [values[r.key] for r in requests]

    def ask_all(self, requests: list[Request], parse: Callable[[str], Any], cache: AnswerCache) -> dict[str, Any]:
        """Ask every request, caching each parsed answer as it comes; on the first failure, cancel the requests not
        yet started, keep the answers of those in flight, and raise it."""
        client = self.client()
        values: dict[str, Any] = {}
        failure: Exception | None = None
        with ThreadPoolExecutor(self.settings["concurrency"], thread_name_prefix="judge") as pool:
            futures = {pool.submit(self.ask, client, r, parse): r for r in requests}
            for future in as_completed(futures):
                try:
                    answer, value = future.result()
                except CancelledError:
                    continue
                except Exception as error:  # a JudgeError, or a bug: stop asking either way
                    if failure is None:
                        failure = error
                        for pending in futures:
                            pending.cancel()
                    continue
                cache.add(futures[future], answer)
                values[futures[future].key] = value
        if failure is not None:
            raise failure
        return values

    def client(self) -> Any:
        from openai import OpenAI

        name = self.settings["api_key_env"]
        key = from_env(name, f"the judge at {self.endpoint}", "its API key") if name else NO_KEY
        self.key = key if name else ""
        return OpenAI(base_url=self.endpoint, api_key=key, timeout=self.settings["timeout"],
                      max_retries=self.settings["retries"])

    def ask(self, client: Any, request: Request, parse: Callable[[str], Any]) -> tuple[str, Any]:
        """(answer, parsed value) of one request, asked again while the answer does not parse."""
        from openai import APIError

        retries = self.settings["retries"]
        body = dict(request.body)
        model, messages = body.pop("model"), body.pop("messages")
        for attempt in range(retries + 1):
            try:
                completion = client.chat.completions.create(model=model, messages=messages, extra_body=body)
            except APIError as error:
                after = f" after {retries + 1} tries" if retries and retried(error) else ""
                raise self.error(request, f"failed{after}: {type(error).__name__}: {error}") from None
            answer = (completion.choices[0].message.content if completion.choices else None) or ""
            try:
                return answer, parse(answer)
            except ParseError as error:
                reason = error
                print(self.redact(f"judge: unparseable answer {answer[:80]!r} to {request.id} "
                                  f"(try {attempt + 1} of {retries + 1})"), flush=True)
        raise self.error(request, f"no parseable answer in {retries + 1} tries, the last {answer[:80]!r}: {reason}")

    def error(self, request: Request, reason: str) -> JudgeError:
        return JudgeError(self.redact(f"judge at {self.endpoint}: request {request.id}: {reason}".replace("\n", " ")))

    def redact(self, text: str) -> str:
        return redact(text, self.key)
