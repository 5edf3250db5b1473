"""Reward-model methods from outside the repository (entry-point group `rmood.methods`): the example package
examples/rmood-lenbt installed into a folder of its own goes through the whole study, and a broken plugin stops
the workflow's parse and the command line with one line naming it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import EXPERIMENT, ROOT, run_snakemake, scheduled

EXAMPLE = ROOT / "examples" / "rmood-lenbt"


def plugin_environment(folder: Path) -> dict[str, str]:
    """This process's environment with the packages of `folder` importable (and their entry points found)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}


def install(package: Path, folder: Path) -> None:
    """`pip install` `package` into `folder` (no dependencies: rmood and TRL are this environment's)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(folder), str(package)], check=True, capture_output=True, timeout=300,
                   cwd=folder.parent)


def fake_distribution(folder: Path, name: str, entry: str, module: str = "") -> None:
    """A package installed in `folder` as pip would leave it: its module (`module`: source) and a dist-info whose
    entry point `name` of the group rmood.methods is `entry`."""
    package = name.replace("-", "_")
    info = folder / f"{package}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[rmood.methods]\nbroken = {entry}\n")
    if module:
        (folder / f"{package}.py").write_text(module)


BROKEN = {  # a plugin package, and the end of the line that names it
    "import": ("raise ImportError('no module named torchx')",
               "cannot be imported: ImportError: no module named torchx"),
    "not a method": ("METHOD = {'name': 'x'}", "is a dict, not an rmood.rm.methods.Method"),
    "built-in name": ("from rmood.rm.methods import Method\n"
                      "METHOD = Method('rrm', 'mine', trainer='rmood.rm.train:train_reward_model')",
                      "reuses the name 'rrm' of a built-in method"),
    "no trainer": ("from rmood.rm.methods import Method\nMETHOD = Method('mine', 'mine', made_by='ensemble')",
                   "must give a trainer (\"module:function\") or trained_as (a method's name), and no made_by"),
}


@pytest.mark.parametrize("fault", sorted(BROKEN))
def test_a_broken_plugin_stops_the_parse_and_the_command_line_with_one_line(tmp_path, fault):
    module, reason = BROKEN[fault]
    fake_distribution(tmp_path / "site", "rmood-broken", "rmood_broken:METHOD", module)
    line = f"rmood: reward-model plugin broken = rmood_broken:METHOD (package rmood-broken 1.0): {reason}"
    env = plugin_environment(tmp_path / "site")
    command = subprocess.run([sys.executable, "-m", "rmood", "--help"], capture_output=True, text=True, env=env,
                             timeout=120)
    assert (command.returncode, command.stderr.strip()) == (1, line)
    (tmp_path / "work").mkdir()
    parse = run_snakemake(tmp_path / "work", "-n", "rm", env=env)
    assert parse.returncode == 1 and line in parse.stderr.splitlines(), parse.stderr[-3000:]
    assert "Traceback" not in parse.stderr


def test_an_unknown_method_is_refused_with_the_known_ones(tmp_path):
    (tmp_path / "more.yaml").write_text("reward_models: [rm, lenbt]\n")
    result = run_snakemake(tmp_path, "-n", "rm", "--configfile", str(ROOT / ".test" / "config.yaml"),
                           str(tmp_path / "more.yaml"))
    assert result.returncode == 1
    assert ("rmood: config key 'reward_models.1': 'lenbt' is not one of ['rm', 'rrm', 'inform', 'golden', 'warm', "
            "'ens_mean', 'ens_wco', 'ens_uwo', 'mrm', 'mrm_pen']") in result.stderr.splitlines()


@pytest.mark.e2e
def test_the_example_method_goes_through_the_study(e2e_study, tmp_path):
    """examples/rmood-lenbt installed into a folder of its own, its tests run, and the test-sized study (a copy of
    the one built) rebuilt with it named in the reward models, PPO's and the distribution analysis's: it is trained,
    checked, optimised by Best-of-N and PPO, analysed and reported beside every built-in method, and nothing of the
    built-in methods reruns but the tables and the report that list them all."""
    site = tmp_path / "site"
    site.mkdir()
    install(EXAMPLE, site)
    env = plugin_environment(site)
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
                           capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert tests.returncode == 0, tests.stdout[-3000:]

    study = tmp_path / "study"
    shutil.copytree(e2e_study.workdir, study, symlinks=True, ignore=shutil.ignore_patterns("rmood"))
    overlay = tmp_path / "lenbt.yaml"
    overlay.write_text((EXAMPLE / "config.yaml").read_text() + "rl: {reward_models: [rm, rrm, inform, golden, warm, "
                       "mrm, mrm_pen, lenbt]}\ndistribution: {reward_models: [rm, mrm, mrm_pen, lenbt]}\n")
    args = ["--cores", "2", "--configfile", str(ROOT / ".test" / "config.yaml"), str(overlay), "--", "mrm_eval"]
    planned = scheduled(run_snakemake(study, "-n", *args, env=env))
    assert planned["train_lenbt"] == 1 and planned["ppo"] == 1 and planned["rm_check"] == 1
    assert "train_rm" not in planned and "sft" not in planned and "train_rrm" not in planned
    result = run_snakemake(study, *args, env=env, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]

    reports = study / "results" / EXPERIMENT / "reports"
    summary = pd.read_csv(reports / "summary.csv").set_index("rm")
    row = summary.loc["lenbt"]
    assert row["id_accuracy"] > 0 and pd.notna(row["bon_delta_at_N"]) and pd.notna(row["ppo_final_gold"])
    assert "`lenbt`" in (reports / "mrm_eval.md").read_text()
    rep = study / "results" / EXPERIMENT / "rep0"
    assert "lenbt" in (rep / "reports" / "rm_accuracy.csv").read_text()
    assert (rep / "distribution" / "lenbt" / "pca.png").is_file()
