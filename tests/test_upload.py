"""The optional Hub upload: the token comes from the environment only and never reaches a log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hf_NotARealTokenButSecret123"


def upload(model: Path, out: Path, token: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"} | {"HF_HUB_OFFLINE": "1"}
    if token:
        env["HF_TOKEN"] = token
    command = [sys.executable, "-m", "rmood", "upload", "--model", str(model), "--out", str(out),
               "--repo-id", "someone/rmood-test-rm", "--set", "upload.enabled=true", "--set", "upload.namespace=someone"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_upload_without_token_says_where_the_token_comes_from(tmp_path, tiny_base):
    result = upload(tiny_base, tmp_path / "receipt.json", token=None)
    assert result.returncode != 0
    assert "needs HF_TOKEN set" in result.stderr
    assert not (tmp_path / "receipt.json").exists()


def test_failed_upload_names_the_repo_and_never_prints_the_token(tmp_path, tiny_base):
    result = upload(tiny_base, tmp_path / "receipt.json", token=SECRET)
    assert result.returncode != 0
    assert f"uploading {tiny_base} to someone/rmood-test-rm failed: OfflineModeIsEnabled" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert not (tmp_path / "receipt.json").exists()
