"""rmood's own reward-model classes registered with transformers' Auto classes, on request.

InfoRM (`rmood.rm.inform`, model_type "rmood_inform") and the rich MRM (`rmood.mrm.model`, "rmood_mrm") load with
`AutoModelForSequenceClassification.from_pretrained(dir)` once `register_models()` has run; the code that loads or
builds reward models (`rmood.rm.score.load_reward_model`, the trainers, the MRM conversion) calls it. Importing a
package registers nothing, so importing an error class or the step registry never loads torch.
"""

from __future__ import annotations


def register_models() -> None:
    """Register InfoRM and the rich MRM with AutoConfig and AutoModelForSequenceClassification (idempotent)."""
    from rmood.mrm.model import register as register_mrm
    from rmood.rm.inform import register as register_inform

    register_inform()
    register_mrm()
