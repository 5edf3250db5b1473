"""Optional upload of trained models to the Hugging Face Hub (`upload.enabled`, off by default).

The token is read from the environment (`HF_TOKEN`) by this process only: it is never a config value, a
rule param, a command-line argument or a log line. Only the files a model needs are sent (safetensors
weights, JSON configs, the tokenizer and its chat template).
"""

from __future__ import annotations

from typing import Any

from rmood.credentials import from_env, redact
from rmood.declaration import FileArg, Step
from rmood.io import write_json

TOKEN_ENV = "HF_TOKEN"
MODEL_FILES = ["*.safetensors", "*.json", "*.jinja", "*.txt", "tokenizer.model"]


class UploadError(RuntimeError):
    """An upload that failed; the message never holds the token."""


def upload_model(model: str, out: str, repo_id: str, upload: dict[str, Any]) -> None:
    """Push the model directory `model` to the Hub repo `repo_id`; write the receipt (repo, commit, url) to `out`."""
    token = from_env(TOKEN_ENV, f"uploading {model}", "the Hub token")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=upload["private"], exist_ok=True)
        commit = api.upload_folder(folder_path=model, repo_id=repo_id, allow_patterns=MODEL_FILES,
                                   commit_message=f"RMOOD: {model}")
    except Exception as error:  # any failure (HTTP, network, offline mode) passes through the redaction
        reason = " ".join(redact(str(error), token).split())  # the Hub does not echo tokens; make sure of it
        raise UploadError(f"uploading {model} to {repo_id} failed: {type(error).__name__}: {reason}") from None
    write_json(out, {"repo_id": repo_id, "model": model, "commit": commit.oid, "url": commit.commit_url})


# The upload stage's one step (rules/upload.smk): declared here, beside its function (this module is cheap to import).
STEPS: dict[str, Step] = {
    "upload": Step(
        "rmood.upload:upload_model",
        "push a model directory to the Hugging Face Hub (token from HF_TOKEN)",
        inputs=(FileArg("model", "model directory"),),
        outputs=(FileArg("out", "upload receipt (JSON)"),),
        config={"upload": "upload"},
        options={"repo_id": str},
    ),
}
