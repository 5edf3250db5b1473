"""The PPO learning rate and the early-stopping share, chosen on the tuning seed (rmood/rl/tuning.py,
rmood/rl/stopping.py): the rules, and how a run takes the rate."""

from pathlib import Path

import pytest

from rmood.io import DataError, read_json, write_json, write_jsonl
from rmood.rl import resolve, tuning_run
from rmood.rl.tuning import choose_learning_rate, run_curve, usable_kl

TUNING = {"seed": 1000, "reward_model": "rm", "learning_rates": [5e-4, 1e-4, 2e-4]}
REPORT = {"kl_budgets": [1, 2, 4, 8], "degenerate": {"finish_rate": 0.5, "kl_per_token": 1.0}}


def curve(kl: list[float], finished: list[float] | None = None, tokens: list[float] | None = None) -> dict:
    steps = [0, 5, 10, 20][: len(kl)]
    return {"rm": "x", "steps": steps, "kl": kl, "finished": finished or [0.9] * len(kl),
            "tokens": tokens or [10.0] * len(kl), "gold": [0.0] * len(kl), "proxy": [0.0] * len(kl)}


def write_curves(folder: Path, runs: dict[float, dict]) -> list[str]:
    paths = []
    for rate, data in runs.items():
        path = folder / tuning_run(rate) / "curve.json"
        write_json(path, {**data, "rm": tuning_run(rate)})
        paths.append(str(path))
    return paths


def test_usable_kl_stops_at_the_first_degenerate_checkpoint():
    assert usable_kl(curve([0, 2, 5, 9]), 0.5, 1.0) == (9, None)
    assert usable_kl(curve([0, 2, 9, 12], finished=[0.8, 0.8, 0.3, 0.8]), 0.5, 1.0) == (2, 10)  # answers stop ending
    assert usable_kl(curve([0, 2, 15, 20]), 0.5, 1.0) == (2, 10)  # 15 nats over 10 tokens: more than a nat a token


def write_runs(folder: Path, runs: dict[float, dict]) -> tuple[str, list[str], list[str]]:
    """Each run's checkpoint files as PPO evaluation writes them, two prompts of ten samples each: its curve's KL,
    share of finished answers (in tenths) and response length at every update; step 0 the SFT policy's samples."""
    def samples(finished: float, tokens: float) -> list[dict]:
        return [{"prompt_id": p, "sample": i, "finished": i < round(10 * finished), "tokens": [7] * int(tokens)}
                for p in ("a", "b") for i in range(10)]

    first = next(iter(runs.values()))
    step0 = folder / "sft" / "step_0" / "samples.jsonl"
    write_jsonl(step0, samples(first["finished"][0], first["tokens"][0]))
    samples_files, kl_files = [], []
    for rate, data in runs.items():
        for k, step in enumerate(data["steps"][1:], start=1):
            checkpoint = folder / tuning_run(rate) / f"step_{step}"
            write_jsonl(checkpoint / "samples.jsonl", samples(data["finished"][k], data["tokens"][k]))
            write_jsonl(checkpoint / "kl.jsonl", [{"prompt_id": p, "sample": i, "kl": data["kl"][k] + (p == "a") - 0.5}
                                                  for p in ("a", "b") for i in range(10)])
            samples_files.append(str(checkpoint / "samples.jsonl"))
            kl_files.append(str(checkpoint / "kl.jsonl"))
    return str(step0), samples_files, kl_files


def test_the_tuning_runs_are_read_from_their_checkpoint_files(tmp_path):
    data = curve([0, 2, 5, 9], finished=[0.9, 0.8, 0.5, 0.3], tokens=[10, 12, 14, 16])
    step0, samples_files, kl_files = write_runs(tmp_path, {1e-4: data})
    read = run_curve(step0, samples_files, kl_files)
    assert {name: pytest.approx(read[name]) for name in read} == {name: data[name] for name in read}
    assert set(read) == {"steps", "kl", "finished", "tokens"}
    with pytest.raises(DataError, match="not of the same checkpoints"):
        run_curve(step0, samples_files, kl_files[:-1])
    write_jsonl(kl_files[0], [{"prompt_id": "a", "sample": 0, "kl": 1.0}])
    with pytest.raises(DataError, match="hold different samples"):
        run_curve(step0, samples_files, kl_files)


def test_the_smallest_rate_that_reaches_the_largest_budget_is_chosen(tmp_path):
    files = write_runs(tmp_path, {1e-4: curve([0, 1, 2, 4]), 2e-4: curve([0, 3, 6, 9]),
                                  5e-4: curve([0, 5, 9, 30], tokens=[10, 10, 10, 32])})
    out = tmp_path / "ppo.json"
    choose_learning_rate(files[0], files[1][::-1], files[2], str(out), TUNING, REPORT)
    chosen = read_json(out)
    assert chosen["learning_rate"] == 2e-4 and chosen["target_kl"] == 8
    assert [c["learning_rate"] for c in chosen["candidates"]] == [1e-4, 2e-4, 5e-4]
    assert [c["usable_kl"] for c in chosen["candidates"]] == pytest.approx([4, 9, 30])
    assert "smallest" in chosen["why"]


def test_without_a_rate_that_reaches_it_the_largest_is_chosen(tmp_path):
    step0, samples_files, kl_files = write_runs(tmp_path, {
        1e-4: curve([0, 1, 2, 4]), 2e-4: curve([0, 1, 3, 5]), 5e-4: curve([0, 6, 30, 60], finished=[0.9, 0.9, 0.1, 0.1])})
    out = tmp_path / "ppo.json"
    choose_learning_rate(step0, samples_files, kl_files, str(out), TUNING, REPORT)
    chosen = read_json(out)
    assert chosen["learning_rate"] == 5e-4 and chosen["candidates"][-1]["degenerate_from"] == 10
    assert "no candidate reached 8 nats" in chosen["why"]
    with pytest.raises(DataError, match="no checkpoint of the tuning run of learning rate 0.0005"):
        choose_learning_rate(step0, samples_files[:6], kl_files[:6], str(tmp_path / "other.json"), TUNING, REPORT)


def test_a_tuned_run_takes_the_chosen_rate(tmp_path):
    write_json(tmp_path / "ppo.json", {"learning_rate": 2e-4})
    assert resolve({"learning_rate": "tuned", "steps": 3}, str(tmp_path / "ppo.json")) == {"learning_rate": 2e-4,
                                                                                            "steps": 3}
    assert resolve({"learning_rate": 1e-3}, None) == {"learning_rate": 1e-3}
    with pytest.raises(ValueError, match="no tuning file"):
        resolve({"learning_rate": "tuned"}, None)


def test_the_stop_share_that_loses_least_gold_on_the_tuning_runs_is_chosen(tmp_path):
    from rmood.rl.stopping import choose_stop_share, stop_index

    assert stop_index([0.05, 0.2, 0.6, 0.9], 0.5, 4) == 2 and stop_index([0.05, 0.2, 0.6, 0.9], 0.95, 4) == 3
    assert stop_index([0.05, 0.2, 0.6, 0.9], 0.5, 2) == 1  # never past the usable checkpoints
    tuning = {**TUNING, "stop_shares": [0.1, 0.3, 0.5, 0.7, 0.9]}
    slow = {**curve([0, 1, 2, 4]), "gold": [0.5, 0.6, 0.7, 0.65], "outlier": [0.05, 0.1, 0.2, 0.6]}  # peak at 2
    fast = {**curve([0, 2, 5, 9]), "gold": [0.5, 0.7, 0.6, 0.4], "outlier": [0.05, 0.15, 0.55, 0.8]}  # peak at 1
    curves = write_curves(tmp_path, {1e-4: slow, 2e-4: fast})
    out = tmp_path / "stop.json"
    choose_stop_share(curves, str(out), tuning, REPORT)
    chosen = read_json(out)
    # 0.1: stops at each run's peak (2 and 1); 0.3 and 0.5: at 3 and 2 (losing 0.05 and 0.1); 0.7 and 0.9: later
    lost = {c["stop_share"]: sum(c["gold_lost"]) for c in chosen["candidates"]}
    assert lost == pytest.approx({0.1: 0.0, 0.3: 0.15, 0.5: 0.15, 0.7: 0.35, 0.9: 0.35})
    assert chosen["stop_share"] == 0.1 and chosen["mean_gold_lost"] == pytest.approx(0.0)
    flat = {**slow, "gold": [0.5] * 4}
    choose_stop_share(write_curves(tmp_path / "flat", {1e-4: flat}), str(out), tuning, REPORT)
    assert read_json(out)["stop_share"] == 0.5  # every share loses nothing: the middle one
    write_json(Path(curves[0]), curve([0, 1, 2, 4]))
    with pytest.raises(DataError, match="no usable checkpoint with an outlier share"):
        choose_stop_share(curves, str(out), tuning, REPORT)
