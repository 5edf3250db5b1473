"""The README and the docs pages run as written: every `snakemake`, `make` and `python -m rmood` command of their
fenced code blocks.

Each command runs in a stand-in of a fresh clone (links to this checkout's files, stand-in model dirs where the
cluster config names its models, `my.yaml` and the README's own `judge.yaml`, the `slurm` profile linked as
`make profile` links it, the example plugin installed as the README installs it) in a harmless form: snakemake with `-n`, make with `-n`, and `python -m rmood` as written
when it asks for `--help`, else parsed by the CLI's parser with its config and `--set` values loaded (not run).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]  # the README and the documentation site's pages
OUTPUTS = {".git", ".snakemake", "results", "logs", "benchmarks", "models", "report.html"}
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "RMOOD_WORKER": "0",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}


@dataclass(frozen=True)
class Command:
    page: str  # README.md or docs/<page>.md
    line: int  # where it starts in it
    env: dict[str, str]  # VAR=value words before the command
    argv: list[str]

    def __str__(self) -> str:
        return shlex.join([*(f"{k}={v}" for k, v in self.env.items()), *self.argv])


def fenced_blocks(text: str) -> list[tuple[str, int, str]]:
    """(language, line of the block's first line, body) of every ``` block, also one indented in a list item (its
    indent removed)."""
    blocks = []
    for m in re.finditer(r"^(?P<indent>[ ]*)```(?P<lang>\w*)\n(?P<body>.*?)^(?P=indent)```", text, re.M | re.S):
        body = "".join(line[len(m["indent"]):] for line in m["body"].splitlines(keepends=True))
        blocks.append((m["lang"], text[:m.start("body")].count("\n") + 1, body))
    return blocks


def readme_commands(text: str, page: str = "README.md") -> list[Command]:
    commands = []
    for lang, first, body in fenced_blocks(text):
        if lang not in ("", "bash", "sh", "shell", "console"):
            continue
        lines = body.split("\n")
        i = 0
        while i < len(lines):
            start, line = first + i, lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):  # continuation lines
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i]
            i += 1
            words = line.split()
            while words and re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]):
                words = words[1:]
            if not words or not (words[0] in ("snakemake", "make")
                                 or words[0].startswith("python") and words[1:3] == ["-m", "rmood"]):
                continue
            tokens = shlex.split(line, comments=True)
            env = {}
            while "=" in tokens[0] and re.fullmatch(r"[A-Za-z_]\w*", tokens[0].split("=", 1)[0]):
                name, value = tokens.pop(0).split("=", 1)
                env[name] = value
            commands.append(Command(page, start, env, tokens))
    return commands


COMMANDS = [command for page in PAGES
            for command in readme_commands(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))]


def test_the_readme_has_commands_of_every_kind():
    kinds = {"python -m rmood" if c.argv[0].startswith("python") else c.argv[0] for c in COMMANDS}
    assert kinds == {"snakemake", "make", "python -m rmood"}, [str(c) for c in COMMANDS]
    for command in COMMANDS:  # a pipe or redirection would hide the command's own exit status
        assert not {"|", ">", ">>", "&&", "||", ";", "&"} & set(command.argv), f"{command.page}:{command.line}: {command}"
    assert {c.page for c in COMMANDS} >= {"README.md", "docs/running.md", "docs/workflow.md"}


@pytest.fixture(scope="module")
def clone(tmp_path_factory, tiny_base) -> tuple[Path, dict[str, str]]:
    """A folder that looks like a fresh clone, and the environment to run the README's commands in."""
    folder = tmp_path_factory.mktemp("clone")
    for entry in ROOT.iterdir():
        if entry.name not in OUTPUTS and not entry.name.startswith(".venv"):
            (folder / entry.name).symlink_to(entry)
    models = folder / "models"  # what the cluster config names; README: "local copies: models/Qwen3-4B-Base, …"
    models.mkdir()
    for name in ("Qwen3-4B-Base", "gold-rm"):
        (models / name).symlink_to(tiny_base)
    (folder / "my.yaml").write_text("experiment: mine\n")
    judge = [body for page in PAGES for lang, _, body in fenced_blocks(page.read_text(encoding="utf-8"))
             if lang == "yaml" and body.startswith("# judge.yaml")]
    assert len(judge) == 1
    yaml.safe_load(judge[0])
    (folder / "judge.yaml").write_text(judge[0])

    from rmood.profile import link_profile

    xdg = tmp_path_factory.mktemp("xdg")
    link_profile("slurm", folder=xdg / "snakemake")  # what `make profile` does, in a temporary config folder
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env |= OFFLINE | {"XDG_CONFIG_HOME": str(xdg), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"}
    from test_plugins import EXAMPLE, install, plugin_environment

    site = tmp_path_factory.mktemp("site")  # the README's `pip install … examples/rmood-lenbt`, into a folder of its own
    install(EXAMPLE, site)
    return folder, env | {"PYTHONPATH": plugin_environment(site)["PYTHONPATH"]}


def dry_run(argv: list[str]) -> list[str]:
    """snakemake and make with -n (as the first option)."""
    if argv[0] in ("snakemake", "make") and not {"-n", "--dry-run", "--dryrun", "--just-print"} & set(argv):
        return [argv[0], "-n", *argv[1:]]
    return argv


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.page}:{c.line}: {c}")
def test_the_readme_command_runs_as_written(command, clone):
    folder, env = clone
    argv = command.argv
    if argv[0].startswith("python") and "--help" not in argv:
        from rmood.cli import parser
        from rmood.config import load_config

        args = parser().parse_args(argv[3:])  # exits (2) with argparse's message on a wrong option
        if hasattr(args, "config"):
            load_config(str(folder / args.config), args.set)  # a relative --config as from the clone
        return
    result = subprocess.run(dry_run(argv), cwd=folder, env=env | command.env, capture_output=True, text=True,
                            timeout=300)
    where = f"{command.page}:{command.line}: {command}"
    assert result.returncode == 0, f"{where}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    if argv[0] == "snakemake" and "--unlock" not in argv:  # (an unlock schedules nothing)
        assert re.search(r"^\s*total\s+\d+", result.stdout, re.M) or "Nothing to be done" in result.stdout, (
            result.stdout[-3000:])
