"""`lenbt`, a reward-model method for RMOOD: Bradley–Terry with a fixed length expert.

A Bradley–Terry RM learns whatever separates chosen from rejected responses, length included, and a policy
optimised against it then grows its responses. Here the preference of a pair is modelled as a product of two
experts, the reward model and a fixed one that prefers the longer response:

    P(chosen ≻ rejected) = σ(r(chosen) − r(rejected) + α·(ℓ_chosen − ℓ_rejected) / tokens)

with ℓ a response's length in tokens. The part of the preference that length explains goes to the fixed expert,
so the reward r need not learn it (the product-of-experts idea of Shen et al. 2023, "Loose lips sink ships", with
the simplest length expert). At inference only r is used. TRL's RewardTrainer takes the length term as each
pair's `margin` (its loss is −log σ(r_c − r_r − margin)), so the trainer is RMOOD's Bradley–Terry one with a
margin column.

This module only declares the method (it is read when Snakemake parses the workflow: nothing heavy is imported);
the training is in `rmood_lenbt.train`.
"""

from rmood.rm.methods import Method

METHOD = Method(
    "lenbt",
    "length-debiased Bradley–Terry: a fixed length expert takes the length preference out of the reward",
    trainer="rmood_lenbt.train:train_lenbt",
    section="lenbt",
    schema={
        "type": "object",
        "additionalProperties": False,
        "description": "lenbt's length expert: α·(ℓ_chosen − ℓ_rejected)/tokens joins the logit of each pair",
        "properties": {
            "alpha": {"type": "number", "minimum": 0, "description": "the weight α of the length expert"},
            "tokens": {"type": "integer", "minimum": 1, "description": "the length difference that counts as 1"},
        },
        "required": ["alpha", "tokens"],
    },
    defaults={"alpha": 1.0, "tokens": 16},
    servable=True,  # a plain *ForSequenceClassification: vLLM (verl) can serve it
)
