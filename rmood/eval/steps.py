"""The evaluation stage: Best-of-N, PPO curves and the study report (rules/eval.smk; `ppo_curve` runs in rules/rl.smk).

The declarations of this stage's steps (see rmood/declaration.py); the functions are imported only when a step
runs, so this module stays cheap to import."""

from __future__ import annotations

from rmood.declaration import FileArg, Step

STEPS: dict[str, Step] = {
    "bon_report": Step(
        "rmood.eval.bon:bon_report",
        "expected gold, proxy, distance and outlier share of best-of-n against KL_BoN, per reward model",
        inputs=(
            FileArg("scores", "bon/scores/<rm>.jsonl files", many=True),
            FileArg("gold", "gold labels JSONL"),
            FileArg("distance", "bon/distance.jsonl: each sample's Mahalanobis distance"),
            FileArg("reference", "mrm/distance_reference.json: the outlier threshold"),
        ),
        outputs=(FileArg("out", "bon/report.json"), FileArg("per_prompt", "bon/per_prompt.npz")),
        config={"n": "bon.n"},
    ),
    "ppo_curve": Step(
        "rmood.eval.ppo_curve:ppo_curve",
        "KL, gold, proxy, finish rate, response length, distance and outlier share of every checkpoint of a PPO run",
        inputs=(
            FileArg("samples_files", "samples.jsonl per step", many=True),
            FileArg("kl_files", "kl.jsonl per step", many=True),
            FileArg("gold_files", "gold.jsonl per step", many=True),
            FileArg("proxy_files", "proxy.jsonl per step", many=True),
            FileArg("distance_files", "distance.jsonl per step", many=True),
            FileArg("reference", "mrm/distance_reference.json: the outlier threshold"),
            FileArg("latent_files", "latent.jsonl per step: distances in InfoRM's latent space", many=True,
                    optional=True),
            FileArg("latent_reference", "rm/inform/latent_reference.npz: their outlier threshold", optional=True),
        ),
        outputs=(FileArg("out", "curve.json"), FileArg("per_prompt", "per_prompt.npz")),
        config={},
        options={"rm": str},
    ),
    "report": Step(
        "rmood.eval.report:make_report",
        "the summary table, curves and variance components with their intervals, the Markdown report and the plots",
        inputs=(
            FileArg("rewards", "rep<seed>/rm/<rm>/check_rewards.npz files", many=True),
            FileArg("pairs", "rep<seed>/pairs/{test,ood}.explicit.jsonl files", many=True),
            FileArg("bon", "rep<seed>/bon/per_prompt.npz files", many=True),
            FileArg("ppo", "rep<seed>/ppo/<rm>/per_prompt.npz files", many=True),
            FileArg("figures", "distribution figures to link from the Markdown", many=True),
            FileArg("references", "rep<seed>/mrm/distance_reference.json files", many=True),
            FileArg("tuning", "tuning/ppo.json (rl.learning_rate tuned)", optional=True),
            FileArg("stop", "tuning/stop.json: the early-stopping share chosen on the tuning seed", optional=True),
        ),
        outputs=(
            FileArg("summary", "reports/summary.csv"),
            FileArg("curves", "reports/curves.csv"),
            FileArg("budgets", "reports/budgets.csv"),
            FileArg("variance", "reports/variance.csv"),
            FileArg("markdown", "reports/mrm_eval.md"),
            FileArg("plots", "reports/plots/*.png", many=True),
        ),
        config={"reward_models": "reward_models", "report": "report", "rl": "rl", "replicate_scope": "replicate_scope"},
    ),
}
