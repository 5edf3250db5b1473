"""rmood's own reward-model classes registered with transformers' Auto classes, on request.

The methods' model classes (`rmood.rm.methods.Method.register`: InfoRM, `rmood.rm.inform`, model_type
"rmood_inform"; the rich MRM, `rmood.mrm.model`, "rmood_mrm") load with
`AutoModelForSequenceClassification.from_pretrained(dir)` once `register_models()` has run; the code that loads or
builds reward models (`rmood.rm.score.load_reward_model`, the trainers, the MRM conversion) calls it. Importing a
package registers nothing, so importing an error class or the step registry never loads torch.
"""

from __future__ import annotations


def register_models() -> None:
    """Register every method's model classes with AutoConfig and AutoModelForSequenceClassification (idempotent)."""
    from rmood.declaration import load
    from rmood.rm.methods import registrations

    for target in registrations():
        load(target)()
