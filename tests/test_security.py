"""Safe by default: no pickle-based loading, shell strings, eval/exec or remote code anywhere in the tree, and a
secret never reaches a file, a log or an error message.

The scan reads the syntax tree, not the text, so aliases (`import numpy as xp`, `from torch import load as l`)
and keyword values count; Snakefile and rules/*.smk go through Snakemake's own parser, which turns every rule
(its `run:` block, params, lambdas, a `shell:` directive) into Python. Shell scripts get a textual check for `eval`.
"""

from __future__ import annotations

import ast
import functools
import io
import os
import re
import shlex
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import ROOT, run_snakemake

PYTHON = sorted(path for folder in ("rmood", "workflow_scripts", "scripts", "bench", "tests")
                for path in ROOT.glob(f"{folder}/**/*.py"))
SNAKEMAKE = [ROOT / "Snakefile", *sorted(ROOT.glob("rules/*.smk"))]
SHELL = sorted([*ROOT.glob("scripts/*.sh"), ROOT / ".ci" / "run"])
NOT_TESTS = ("rmood/", "workflow_scripts/", "scripts/", "bench/", "Snakefile", "rules/")  # tests may read fake secrets

SAFE_YAML_LOADERS = {f"yaml.{name}" for name in ("SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader")}
PICKLED = {"pandas.read_pickle", "joblib.load", "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load",
           "yaml.full_load_all"}
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "shelve"}
SHELL_CALLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
               "asyncio.create_subprocess_shell", "shell", "snakemake.shell", "snakemake.shell.shell"}
# `shell`: what Snakemake's `shell:` directive becomes
SECRET_NAME = re.compile(r"[A-Z0-9_]*(?<![A-Z0-9])(?:TOKEN|API_KEY|SECRET)(?![A-Z0-9])[A-Z0-9_]*")
# (file, rule) -> why that file may break that rule
ALLOWED: dict[tuple[str, str], str] = {}


def aliases(tree: ast.AST) -> dict[str, str]:
    """What each imported name stands for, anywhere in the module: `import numpy as xp` gives xp -> numpy,
    `from numpy import load as l` gives l -> numpy.load."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0]: a.name if a.asname else a.name.split(".")[0]
                      for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {a.asname or a.name: f"{node.module}.{a.name}" for a in node.names}
    return names


def qualified(node: ast.AST, names: dict[str, str]) -> str | None:
    """The dotted name an expression stands for (`xp.load` -> numpy.load; a builtin is its own name), or None."""
    if isinstance(node, ast.Name):
        return names.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = qualified(node.value, names)
        return base and f"{base}.{node.attr}"
    return None


def is_constant(node: ast.AST | None, value: bool) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def call_rules(call: ast.Call, names: dict[str, str]) -> Iterator[str]:
    """The rules a call breaks."""
    name = qualified(call.func, names)
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    if name == "numpy.load" and not is_constant(keywords.get("allow_pickle"), False):
        yield "numpy.load without allow_pickle=False"
    if name == "torch.load" and not is_constant(keywords.get("weights_only"), True):
        yield "torch.load without weights_only=True"
    if name in PICKLED:
        yield f"{name} (unpickles)"
    if name in ("yaml.load", "yaml.load_all"):
        loader = keywords.get("Loader", call.args[1] if len(call.args) > 1 else None)
        if loader is None or qualified(loader, names) not in SAFE_YAML_LOADERS:
            yield f"{name} without a safe Loader"
    if name in SHELL_CALLS or ("shell" in keywords and not is_constant(keywords["shell"], False)):
        yield "a shell command line"
    if name in ("eval", "exec", "builtins.eval", "builtins.exec"):
        yield "eval/exec"
    if "trust_remote_code" in keywords and not is_constant(keywords["trust_remote_code"], False):
        yield "trust_remote_code not False"


def rules_broken(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, rule) of everything in a module's syntax tree that the scan forbids."""
    names = aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield from ((node.lineno, rule) for rule in call_rules(node, names))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            if any(module.split(".")[0] in PICKLE_MODULES for module in modules):
                yield node.lineno, "a pickle module"
        elif isinstance(node, ast.Dict):
            if any(isinstance(k, ast.Constant) and k.value == "trust_remote_code" and not is_constant(v, False)
                   for k, v in zip(node.keys, node.values)):
                yield node.lineno, "trust_remote_code not False"
        elif isinstance(node, ast.Assign) and not is_constant(node.value, False):
            if any(isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant)
                   and t.slice.value == "trust_remote_code" for t in node.targets):
                yield node.lineno, "trust_remote_code not False"


def secret_reads(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, rule) of every place a module reads a secret: a call of rmood.credentials.from_env (the door for them),
    or a string naming a secret environment variable (HF_TOKEN, *_API_KEY), read through the door or not."""
    names = aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and qualified(node.func, names) == "rmood.credentials.from_env":
            yield node.lineno, "reads a secret (from_env)"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SECRET_NAME.fullmatch(node.value):
            yield node.lineno, f"reads a secret ({node.value})"


def snakemake_tree(text: str, path: str) -> tuple[ast.AST, dict[int, int]]:
    """A Snakefile as the Python Snakemake makes of it, and the map from its lines to the file's."""
    from snakemake.parser import parse
    from snakemake.sourcecache import LocalSourceFile

    workflow = types.SimpleNamespace(sourcecache=types.SimpleNamespace(open=lambda _: io.StringIO(text)))
    linemap: dict[int, int] = {}
    code, _ = parse(LocalSourceFile(path), workflow, linemap)
    return ast.parse(code, path), linemap


def shell_evals(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.search(r"(^|[\s;&|(`])eval(\s|$)", line.split("#")[0]):
            yield number, "eval"


def scan(text: str, path: str) -> list[tuple[int, str]]:
    """(line, rule) of the file `path` with contents `text`; secrets read count outside tests only."""
    if path.endswith(".sh") or path.startswith(".ci/"):
        return list(shell_evals(text))
    if path == "Snakefile" or path.endswith(".smk"):
        tree, linemap = snakemake_tree(text, path)
    else:
        tree, linemap = ast.parse(text, path), {}
    found = list(rules_broken(tree))
    if path.startswith(NOT_TESTS):
        found += secret_reads(tree)
    return sorted((linemap.get(line, line), rule) for line, rule in found)


@functools.cache
def scan_tree() -> list[tuple[str, int, str]]:
    """(file, line, rule) of the whole tree, less ALLOWED (read once per session)."""
    hits = []
    for path in (*PYTHON, *SNAKEMAKE, *SHELL):
        name = str(path.relative_to(ROOT))
        hits += [(name, line, rule) for line, rule in scan(path.read_text(encoding="utf-8"), name)
                 if (name, rule) not in ALLOWED]
    return hits


def test_the_scan_covers_the_tree() -> None:
    names = {str(p.relative_to(ROOT)) for p in (*PYTHON, *SNAKEMAKE, *SHELL)}
    assert {"rmood/upload.py", "workflow_scripts/step.py", "bench/gda.py", "tests/conftest.py", "Snakefile",
            "rules/common.smk", "rules/upload.smk", "scripts/local-slurm.sh", ".ci/run"} <= names
    assert len(PYTHON) > 80 and len(SNAKEMAKE) == 13  # Snakefile and the 12 rules files


def test_no_unsafe_code_in_the_tree() -> None:
    assert [f"{path}:{line}: {rule}" for path, line, rule in scan_tree() if not rule.startswith("reads a secret")] == []


@pytest.mark.parametrize("code, rule", [
    ("from numpy import load as l\nl(p)", "numpy.load without allow_pickle=False"),
    ("import numpy as xp\nxp.load(p, mmap_mode='r')", "numpy.load without allow_pickle=False"),
    ("import numpy as np\nnp.load(p, allow_pickle=True)", "numpy.load without allow_pickle=False"),
    ("import torch\ntorch.load(p)", "torch.load without weights_only=True"),
    ("from torch import load as restore\nrestore(p, weights_only=False)", "torch.load without weights_only=True"),
    ("import yaml\nyaml.load(f)", "yaml.load without a safe Loader"),
    ("import yaml\nyaml.load(f, Loader=yaml.Loader)", "yaml.load without a safe Loader"),
    ("from yaml import load_all, UnsafeLoader\nload_all(f, UnsafeLoader)", "yaml.load_all without a safe Loader"),
    ("import yaml as y\ny.unsafe_load(f)", "yaml.unsafe_load (unpickles)"),
    ("import pandas as pd\npd.read_pickle(p)", "pandas.read_pickle (unpickles)"),
    ("from joblib import load\nload(p)", "joblib.load (unpickles)"),
    ("import pickle", "a pickle module"),
    ("from cloudpickle import loads", "a pickle module"),
    ("import dill as d", "a pickle module"),
    ("import subprocess\nsubprocess.run(cmd, shell=True)", "a shell command line"),
    ("from subprocess import check_output as run\nrun(cmd, shell=flag)", "a shell command line"),
    ("import os\nos.system(cmd)", "a shell command line"),
    ("from os import popen\npopen(cmd)", "a shell command line"),
    ("eval(text)", "eval/exec"),
    ("exec(text)", "eval/exec"),
    ("import builtins\nbuiltins.eval(text)", "eval/exec"),
    ("AutoModel.from_pretrained(p, trust_remote_code=True)", "trust_remote_code not False"),
    ("load(p, **{'trust_remote_code': flag})", "trust_remote_code not False"),
    ("kwargs['trust_remote_code'] = True", "trust_remote_code not False"),
])
def test_the_scan_catches_what_it_looks_for(code: str, rule: str) -> None:
    assert scan(code, "rmood/x.py") == [(code.count("\n") + 1, rule)]


@pytest.mark.parametrize("code", [
    "import numpy as np\nnp.load(p, mmap_mode='r', allow_pickle=False)",
    "import torch\ntorch.load(p, weights_only=True)",
    "import yaml\nyaml.load(f, Loader=yaml.SafeLoader)",
    "from yaml import CSafeLoader as Loader, load\nload(f, Loader)",
    "import yaml\nyaml.safe_load(f)",
    "model.eval()",
    "import subprocess\nsubprocess.run(['ls'], shell=False)",
    "AutoModel.from_pretrained(p, trust_remote_code=False)",
    "from rmood.io import load\nload(p)",
    "os.environ['TOKENIZERS_PARALLELISM'] = 'false'",
    "'''Reads HF_TOKEN from the environment.'''",
])
def test_the_scan_passes_safe_code(code: str) -> None:
    assert scan(code, "rmood/x.py") == []


def test_the_scan_reads_snakemake_files_and_shell_scripts() -> None:
    rule = 'rule a:\n    output: "a"\n    params: x=lambda w: eval(w.x)\n    shell: "touch {output}"\n'
    assert scan(rule, "rules/a.smk") == [(3, "eval/exec"), (4, "a shell command line")]
    assert scan('rule a:\n    output: "a"\n    run:\n        import os\n        os.system("true")\n', "Snakefile") == [
        (5, "a shell command line")]
    assert scan('x=1\neval "$cmd"  # never\necho evaluate  # eval\nfoo; eval $(bar)\n', "scripts/a.sh") == [
        (2, "eval"), (4, "eval")]


def test_secret_reads_are_found_outside_tests_only() -> None:
    code = ('TOKEN_ENV = "HF_TOKEN"\nkey = os.environ["JUDGE_API_KEY"]\nos.environ["TOKENIZERS_PARALLELISM"]\n'
            'from rmood.credentials import from_env as env\nenv(settings["api_key_env"], "judging", "its key")\n')
    assert scan(code, "rmood/x.py") == [(1, "reads a secret (HF_TOKEN)"), (2, "reads a secret (JUDGE_API_KEY)"),
                                        (5, "reads a secret (from_env)")]
    assert scan(code, "tests/test_x.py") == []


# --- a secret never reaches a file, a log or an error message ------------------------------------------------

CORE = "RMOODFAKESECRET"  # what the check looks for: the fake secret's distinctive part
SECRET = f"hf_{CORE}x7Q2vL9"


class SecretStep(NamedTuple):
    """A step that reads the secret `variable` (in `module`), run from a scratch folder with the network down:
    `python -m rmood ARGS` or `snakemake ARGS` ({folder} in ARGS is the folder; `inputs` are files written there
    first). `reached` is a pattern of the output showing the step got as far as using the secret."""

    variable: str
    module: str
    program: str  # rmood | snakemake
    args: str
    inputs: dict[str, str]
    reached: str


SECRET_STEPS = [  # every step that reads a secret (test_every_secret_is_read_where_it_is_tested)
    SecretStep("HF_TOKEN", "rmood/upload.py", "rmood",
               "upload --model model --out receipt.json --repo-id someone/rmood-t "
               "--set upload.enabled=true --set upload.namespace=someone",
               {"model/config.json": "{}"},
               r"rmood upload: uploading model to someone/rmood-t failed: ConnectError"),
    SecretStep("HF_TOKEN", "rmood/upload.py", "snakemake",
               "--configfile {folder}/upload.yaml --allowed-rules upload --skip-script-cleanup "
               "-- results/embedded/upload/sft.json",
               {"results/embedded/rep0/sft/model/config.json": "{}", "upload.yaml": "upload: {enabled: true, namespace: x}"},
               r"to x/rmood-embedded-sft failed"),
    SecretStep("RMOOD_JUDGE_KEY", "rmood/labeling/judge.py", "rmood",
               "gold --samples s.jsonl --prompt-files p.jsonl --out gold.jsonl --set gold.source=judge "
               "--set judge.base_url=http://127.0.0.1:9/v1 --set judge.model=m "
               "--set judge.api_key_env=RMOOD_JUDGE_KEY --set judge.retries=0",
               {"p.jsonl": '{"id": "p", "messages": [{"role": "user", "content": "hi"}]}',
                "s.jsonl": '{"prompt_id": "p", "sample": 0, "response": "hello", "finished": true}'},
               r"rmood gold: judge at http://127.0.0.1:9/v1: request p/0: failed: APIConnectionError"),
]


def leaks(folder: Path, output: str) -> list[str]:
    """Where the fake secret shows: the captured output, or a file under `folder`."""
    files = [str(p.relative_to(folder)) for p in sorted(folder.rglob("*"))
             if p.is_file() and CORE.encode() in p.read_bytes()]
    return ["stdout/stderr"] * (CORE in output) + files


def run_with_secret(step: SecretStep, folder: Path) -> subprocess.CompletedProcess:
    """Run `step` with the fake secret, offline (a dead proxy), its temporary files and Hub cache inside `folder`."""
    for name, text in step.inputs.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "tmp").mkdir()
    dead = "http://127.0.0.1:9"
    env = {k: v for k, v in os.environ.items() if not SECRET_NAME.fullmatch(k)} | {
        step.variable: SECRET, "HF_HUB_OFFLINE": "0", "HF_HOME": str(folder / "hf_home"), "TMPDIR": str(folder / "tmp"),
        "RMOOD_WORKER": "0", "PYTHONPATH": str(ROOT), "NO_PROXY": "", "no_proxy": "",
        **{name: dead for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")}}
    args = shlex.split(step.args.format(folder=folder))
    if step.program == "snakemake":
        return run_snakemake(folder, "--cores", "1", *args, env=env, timeout=300)
    return subprocess.run([sys.executable, "-m", "rmood", *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("step", SECRET_STEPS, ids=lambda s: f"{Path(s.module).stem}-{s.program}")
def test_a_secret_reaches_no_file_log_or_error(step: SecretStep, tmp_path: Path) -> None:
    result = run_with_secret(step, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and re.search(step.reached, output), output[-3000:]
    assert leaks(tmp_path, output) == []


def test_the_leak_check_finds_the_secret(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "step.log").write_bytes(b"\x00token " + SECRET[:-3].encode())
    (tmp_path / "clean.json").write_text("{}")
    assert leaks(tmp_path, f"Error: bad token {SECRET}") == ["stdout/stderr", "logs/step.log"]
    assert leaks(tmp_path / "logs", "") == ["step.log"]


def test_every_secret_is_read_where_it_is_tested() -> None:
    """A module that reads a secret is run by a SecretStep (add one above for a new one)."""
    assert {path for path, _, rule in scan_tree() if rule.startswith("reads a secret")} == {
        step.module for step in SECRET_STEPS}
