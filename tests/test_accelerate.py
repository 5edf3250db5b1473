"""Training under `accelerate launch` (training.launcher: accelerate): two CPU processes over gloo."""

from __future__ import annotations

from pathlib import Path

from rmood.runner import own_process, run_own_process
from rmood.config import DEFAULT, load_config
from rmood.io import write_jsonl
from rmood.steps import settings
from test_models import conversations

ROOT = Path(__file__).resolve().parents[1]


def test_two_processes_train_a_reward_model(tiny_base, prompt_data, tmp_path):
    from transformers import AutoModelForSequenceClassification

    convs = conversations(prompt_data["preference"], 16)
    write_jsonl(tmp_path / "pairs.jsonl", [{"chosen": convs[i], "rejected": convs[i + 1]} for i in range(0, 16, 2)])
    config = load_config(DEFAULT, ["training.launcher=accelerate", "training.num_processes=2",
                                   f"training.accelerate_config={ROOT / 'config/accelerate/ddp.yaml'}",
                                   "rm.epochs=2", "rm.batch_size=2", "rm.save_steps=2"])
    command = own_process("train_rm", config)
    assert command[1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    out, work = tmp_path / "rm", tmp_path / "work"
    request = {"step": "train_rm", "settings": settings("train_rm", config) | {"work_dir": str(work)},
               "paths": {"policy": str(tiny_base), "pairs": str(tmp_path / "pairs.jsonl"), "model": str(out)}}
    log = tmp_path / "train_rm.log"
    code = run_own_process(command, request, str(log), threads=1)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert text.count("trained on 2 process(es) (MULTI_CPU)") == 2  # both ranks ran the step ...
    assert "| 4/4 [" in text  # 8 pairs / (2 per process x 2 processes) x 2 epochs: the data was split
    model = AutoModelForSequenceClassification.from_pretrained(out)  # ... and the main one saved a valid model
    assert type(model).__name__ == "Qwen3ForSequenceClassification" and model.config.num_labels == 1
    assert (out / "chat_template.jinja").is_file() or "chat_template" in (out / "tokenizer_config.json").read_text()
    assert not work.exists() and not list(tmp_path.glob(".rm.*"))  # checkpoints dropped, no temporary folder left
