"""A job's params carry the version of the code its step runs (rmood/code.py): what an edit changes, and what not."""

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from rmood.code import step_modules
from rmood.steps import STEPS

EDITS = {  # rmood/rm/rrm.py: the tie term of rrm_loss halved, and only its docstring or a comment changed
    "loss": ("neutral = -neutral_loss_weight * 0.5 *", "neutral = -neutral_loss_weight * 0.25 *"),
    "docstring": ('"""Mean over the pairs of', '"""The mean over the pairs of'),
    "comment": ("    d = rewards_chosen - rewards_rejected\n", "    d = rewards_chosen - rewards_rejected  # margins\n"),
}


def versions(package_root: Path) -> dict[str, str]:
    """Every step's code version computed from the rmood package under `package_root`, in a fresh interpreter."""
    code = ("from rmood.steps import STEPS, code_version\n"
            "print('\\n'.join(f'{name} {code_version(name)}' for name in STEPS))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=package_root, env={"PYTHONPATH": str(package_root), "PATH": ""})
    return dict(line.split() for line in result.stdout.splitlines())


def test_an_edit_changes_the_version_of_the_steps_that_run_it(tmp_path):
    shutil.copytree(ROOT / "rmood", tmp_path / "rmood", ignore=shutil.ignore_patterns("__pycache__"))
    source = tmp_path / "rmood" / "rm" / "rrm.py"
    original = source.read_text()
    before = versions(tmp_path)
    assert before == versions(ROOT)  # the version depends on the code, not where it lies
    changed = {}
    for kind, (old, new) in EDITS.items():
        assert original.count(old) == 1, kind
        source.write_text(original.replace(old, new))
        changed[kind] = {name for name, version in versions(tmp_path).items() if version != before[name]}
    assert changed["loss"] == {"train_rrm"}  # nothing else imports rmood.rm.rrm
    assert changed["docstring"] == changed["comment"] == set()


def test_no_ppo_job_runs_the_report_code_or_the_tuning_rules():
    """An edit of the report's PPO curves or of the tuning rules reruns no PPO job: the learning-rate rule reads the
    runs' checkpoint files itself, and rmood.config, which the KL jobs import, imports no tuning code."""
    assert not [m for m in step_modules(STEPS["ppo_tuning"].target) if m.startswith("rmood.eval")]
    for step in ("train_ppo", "train_ppo_verl", "ppo_eval", "rl_kl"):
        modules = step_modules(STEPS[step].target)
        assert not {"rmood.eval.ppo_curve", "rmood.rl.tuning", "rmood.rl.stopping"} & set(modules), step


def test_a_step_counts_the_modules_it_imports_transitively():
    modules = step_modules(STEPS["train_rrm"].target)
    assert {"rmood.rm.rrm", "rmood.rm.train", "rmood.training", "rmood.io", "rmood.rm", "rmood"} <= set(modules)
    assert "rmood.rm.rrm" not in step_modules(STEPS["train_rm"].target)
    assert "rmood.rl.ppo" in step_modules(STEPS["train_ppo"].target)
    assert "rmood.rl.engine" in step_modules(STEPS["train_ppo"].target)  # imported inside train_ppo
    # the modules of the model classes rmood.rm.auto registers, named in the methods' registry
    assert {"rmood.rm.inform", "rmood.mrm.model"} <= set(step_modules(STEPS["score"].target))
