"""RMOOD: reward hacking in RLHF, end to end. See README.md; config keys in config/schema.yaml."""


configfile: f"{workflow.basedir}/config/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/sft.smk"
include: "rules/labeling.smk"
include: "rules/rm.smk"


rule mrm_eval:
    """The study. For now: up to the reward-model checks."""
    input:
        result("rm/rm/check.json"),


rule all:
    input:
        rules.mrm_eval.input,


rule rm:
    """The Bradley–Terry reward model and its checks."""
    input:
        result("rm/rm/model"),
        result("rm/rm/check.json"),
