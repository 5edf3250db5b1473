"""Config fuzzing: configs made around config/schema.yaml (wrong types, missing, extra and misplaced keys, extreme
numbers, wrong reward-model names) are accepted or refused with one line naming the key — by `validate_config`,
`--set` overrides, `python -m rmood` and a Snakemake dry run alike, never with a traceback."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from typing import Any, NamedTuple

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import ROOT, run_snakemake
from rmood.config import DEFAULT, ConfigError, load_config, schema, validate_config

SCHEMA_DOC = schema()  # with the reward-model methods' names filled in
BASE = yaml.safe_load(DEFAULT.read_text(encoding="utf-8"))
WRONG_NAMES = ["RM", "mrm ", "nonsense", "", "rm_seed1", "ens_max"]
VALUES = {  # per JSON type: ordinary values and the extremes a YAML file can hold
    "string": st.one_of(st.text(max_size=12), st.sampled_from(["..", "/", "a\nb", "x" * 300, "tiny", "programmatic"])),
    "integer": st.one_of(st.integers(-3, 3), st.sampled_from([2**31, 2**32, 2**63, 10**30, -(10**30)])),
    "number": st.one_of(st.floats(), st.sampled_from([2.0, -0.0, 1e-300, 1e308])),  # floats() holds nan and ±inf
    "boolean": st.booleans(),
    "null": st.none(),
    "array": st.lists(st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
    "object": st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
}
settings.register_profile("fuzz", derandomize=True, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def resolve(node: dict) -> dict:
    """A schema node with the `$defs` entry it refers to merged in (properties and required lists combined)."""
    if "$ref" not in node:
        return node
    target = resolve(SCHEMA_DOC["$defs"][node["$ref"].rsplit("/", 1)[1]])
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    merged["properties"] = {**target.get("properties", {}), **node.get("properties", {})}
    merged["required"] = [*target.get("required", []), *node.get("required", [])]
    return merged


def schema_keys(node: dict = SCHEMA_DOC, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], dict]:
    """Every key of the schema (a path of names) with its resolved node."""
    found = {}
    for name, child in resolve(node).get("properties", {}).items():
        found[(*path, name)] = resolve(child)
        found |= schema_keys(child, (*path, name))
    return found


def types(node: dict) -> set[str]:
    kind = node.get("type", "string" if "enum" in node else None)
    return set(kind) if isinstance(kind, list) else {kind}


KEYS = schema_keys()
PATHS = sorted(KEYS)
SECTIONS = [(), *(path for path in PATHS if False in (KEYS[path].get("additionalProperties"),
                                                       KEYS[path].get("unevaluatedProperties")))]  # closed to new keys


def dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) or "(top level)"


def of_its_type(node: dict) -> st.SearchStrategy:
    """Values of the key's own JSON type(s): anything, extremes, and wrong names among an enum's."""
    if "enum" in node:
        return st.sampled_from([*node["enum"], *WRONG_NAMES])
    if "array" in types(node):
        return st.lists(of_its_type(resolve(node["items"])), max_size=4)
    patterns = [st.from_regex(node["pattern"], fullmatch=True)] if "pattern" in node else []
    return st.one_of(*(VALUES[kind] for kind in types(node)), *patterns)


def of_another_type(node: dict) -> st.SearchStrategy:
    """Values of every JSON type the key does not allow (integers are numbers; floats are not integers)."""
    allowed = types(node) | ({"integer"} if "number" in types(node) else set())
    return st.one_of(*(values for kind, values in VALUES.items() if kind not in allowed))


class Change(NamedTuple):
    kind: str  # set (a value of its type) | wrong (another type) | delete | extra (a key `bogus`) | move
    path: tuple[str, ...]  # the key; for `extra` the section
    value: Any = None  # the new value, or the section the key moves to


MUST_REFUSE = ("wrong", "delete", "extra", "move")


@st.composite
def changes(draw, kinds: tuple[str, ...] = ("set", *MUST_REFUSE)) -> Change:
    kind = draw(st.sampled_from(kinds))
    if kind == "extra":
        return Change(kind, draw(st.sampled_from(SECTIONS)))
    path = draw(st.sampled_from(PATHS))
    if kind == "move":
        targets = [s for s in SECTIONS if (*s, path[-1]) not in KEYS and s[: len(path)] != path]
        return Change(kind, path, draw(st.sampled_from(targets)))
    values = {"set": of_its_type, "wrong": of_another_type}.get(kind)
    return Change(kind, path, draw(values(KEYS[path])) if values else None)


def section(config: Any, path: tuple[str, ...]) -> dict | None:
    """The mapping at `path`, or None where an earlier change removed or replaced it."""
    for part in path:
        config = config.get(part) if isinstance(config, dict) else None
    return config if isinstance(config, dict) else None


def apply(config: dict, edits: list[Change]) -> dict:
    config = copy.deepcopy(config)
    for kind, path, value in edits:
        parent = section(config, path if kind == "extra" else path[:-1])
        if parent is None or (kind in ("delete", "move") and path[-1] not in parent):
            continue
        if kind == "extra":
            parent["bogus"] = 1
        elif kind == "delete":
            del parent[path[-1]]
        elif kind == "move":
            target = section(config, value)
            if target is not None:
                target[path[-1]] = parent.pop(path[-1])
        else:
            parent[path[-1]] = value
    return config


def refused_at(change: Change) -> set[str]:
    """The keys a single change of a MUST_REFUSE kind is refused at (or under: an item of a list)."""
    if change.kind == "wrong":
        return {dotted(change.path)}
    if change.kind == "move":
        return {dotted(change.path[:-1]), dotted(change.value)}
    return {dotted(change.path if change.kind == "extra" else change.path[:-1])}


def outcome(config: dict) -> str | None:
    """None if `validate_config` accepts the config, else its ConfigError (any other exception fails the test)."""
    try:
        validate_config(copy.deepcopy(config))
    except ConfigError as error:
        return str(error)
    return None


def named_key(message: str) -> str:
    """The key a refusal names; fails unless it is one printable line `config key '<key>': <reason>`."""
    match = re.fullmatch(r"config key '([^']+)': \S.*", message)
    assert match and message.isprintable(), repr(message)
    key = match[1]
    assert key == "(top level)" or tuple(p for p in key.split(".") if not p.isdigit()) in KEYS, message
    return key


def test_the_walk_covers_the_schema() -> None:
    """Every key has a type, every key of the default config is found, and every key is required."""
    assert all(types(node) <= set(VALUES) for node in KEYS.values())
    assert ("sft", "epochs") in KEYS and ("rl", "verl", "kl") in KEYS and ("resources", "ppo", "mem_mb") in KEYS
    for path, node in [((), SCHEMA_DOC), *KEYS.items()]:
        node = resolve(node)
        assert set(node.get("properties", {})) == set(node.get("required", [])), path
        if path in KEYS or path == ():
            assert set(section(BASE, path) or {}) <= set(node.get("properties", {})), path


@settings(settings.get_profile("fuzz"), max_examples=300)
@given(st.lists(changes(), min_size=1, max_size=3))
@example([Change("set", ("model", "source"), "x" * 300)])  # a name too long for the OS
@example([Change("set", ("sft", "chat_template_path"), "x" * 300)])
@example([Change("set", ("gold", "source"), "a\nb")])  # two lines
@example([Change("set", ("gold", "source"), "judge"), Change("set", ("judge", "base_url"), "http://h/v1"),
          Change("set", ("judge", "model"), "m"), Change("set", ("judge", "pointwise", "template"), "a\nb")])
def test_any_config_is_accepted_or_refused_at_a_key(edits: list[Change]) -> None:
    message = outcome(apply(BASE, edits))
    if message is not None:
        named_key(message)


@settings(settings.get_profile("fuzz"), max_examples=200)
@given(changes(MUST_REFUSE))
@example(Change("wrong", ("sampling", "shards"), 2.0))
@example(Change("wrong", ("replicates",), [1.0]))
def test_a_wrong_type_missing_extra_or_misplaced_key_is_refused_at_that_key(change: Change) -> None:
    message = outcome(apply(BASE, [change]))
    assert message is not None, change
    key = named_key(message)
    assert any(key == at or key.startswith(f"{at}.") for at in refused_at(change)), (key, change)


@settings(settings.get_profile("fuzz"), max_examples=150)
@given(st.sampled_from(PATHS).map(dotted), st.text())
@example("sft.epochs", "[")
@example("seed", "!!python/object:os.system")
def test_a_set_override_is_accepted_or_refused_at_its_key(key: str, raw: str) -> None:
    try:
        load_config(assignments=[f"{key}={raw}"])
    except ConfigError as error:
        named_key(str(error))


def rmood_gda(tmp_path, config: str) -> list[str]:
    """stderr lines of `python -m rmood gda --config <config>` (its inputs are missing: past the config it stops
    there)."""
    command = [sys.executable, "-m", "rmood", "gda", "--chosen", str(tmp_path / "c.npy"),
               "--rejected", str(tmp_path / "r.npy"), "--out", str(tmp_path / "gda.npz"), "--config", config]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == "", result.stdout + result.stderr
    return result.stderr.splitlines()


@settings(settings.get_profile("fuzz"), max_examples=4)
@given(edits=st.lists(changes(MUST_REFUSE), min_size=1, max_size=2))  # accepted ones would import torch: 6 s each
@example(edits=[Change("set", ("model", "source"), "x" * 300)])
def test_python_m_rmood_refuses_a_config_in_one_line(tmp_path, edits: list[Change]) -> None:
    config = apply(BASE, edits)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    assert rmood_gda(tmp_path, str(path)) == [f"rmood gda: {outcome(config)}"]


def test_python_m_rmood_refuses_an_unreadable_config_file_in_one_line(tmp_path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("experiment: x\nsft: {epochs: 1\n", encoding="utf-8")
    expected = f"rmood gda: {broken}:3:1: expected ',' or '}}', but got '<stream end>'"
    assert rmood_gda(tmp_path, str(broken)) == [expected]
    missing = tmp_path / "none.yaml"
    assert rmood_gda(tmp_path, str(missing)) == [f"rmood gda: {missing}: No such file or directory"]


@settings(settings.get_profile("fuzz"), max_examples=5)
@given(edits=st.lists(changes(("set",)), min_size=1, max_size=2))  # values of the right type reach the DAG's code
@example(edits=[Change("set", ("sampling", "shards"), 10**30)])  # took 23 GB and was killed before the bound
@example(edits=[Change("extra", ("rl", "verl"))])
@example(edits=[Change("set", ("rl", "steps"), 10**30)])
@example(edits=[Change("set", ("distribution", "prompts"), 10**30)])
@example(edits=[Change("wrong", ("bon", "shards"), 2.0)])  # range(2.0) in common.smk: a TypeError before
def test_a_snakemake_dry_run_refuses_a_config_in_one_line(tmp_path, edits: list[Change]) -> None:
    """Snakemake merges --configfile over the default, so the expected outcome is that of the merged config."""
    from snakemake.utils import update_config

    config = apply(BASE, edits)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    merged = copy.deepcopy(BASE)
    update_config(merged, config)
    message = outcome(merged)
    result = run_snakemake(tmp_path / "work", "-n", "--configfile", str(path), "--cores", "1", timeout=60)
    output = result.stdout + result.stderr
    assert "Traceback" not in output and 'File "' not in output, output[-3000:]
    if message is None:
        assert result.returncode == 0, output[-3000:]
    else:
        assert result.returncode == 1 and result.stderr.splitlines()[-1] == f"rmood: {message}", output[-3000:]
