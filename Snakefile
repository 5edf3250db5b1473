"""RMOOD: reward hacking in RLHF, end to end. See README.md and docs/; config keys in config/schema.yaml."""


configfile: f"{workflow.basedir}/config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/shared.smk"
include: "rules/data.smk"
include: "rules/sft.smk"
include: "rules/labeling.smk"
include: "rules/rrm_data.smk"
include: "rules/rm.smk"
include: "rules/mrm.smk"
include: "rules/eval.smk"
include: "rules/rl.smk"
include: "rules/distribution.smk"
include: "rules/upload.smk"


rule rm:
    """The Bradley–Terry reward model and its checks, in every replicate."""
    input:
        [rm_model("rm", rep) for rep in REPLICATES],
        every_replicate("rm/rm/check.json"),


rule reward_models:
    """Every configured reward model, its checks and the side-by-side table, in every replicate."""
    input:
        [rm_model(name, rep) for rep in REPLICATES for name in config["reward_models"]],
        every_replicate("reports/rm_accuracy.csv"),
        [mrm_reports(rep) for rep in REPLICATES],


rule mrm_eval:
    """The study: every reward model, Best-of-N and PPO against each, the report and its plots."""
    default_target: True
    input:
        rules.reward_models.input,
        rules.report.output,
        [
            policy_file(f"distribution/gold/{prompt}.jsonl", FIRST_REPLICATE)
            for prompt in DIST_PROMPTS
        ],
        uploads(),


rule all:
    input:
        rules.mrm_eval.input,


# Every rule's input, output and params names match its step's declaration (a mismatch stops a dry run).
check_rule_steps(workflow.rules)
