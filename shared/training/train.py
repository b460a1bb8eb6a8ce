"""Models saved before the training code moved to `shared.jobs.training` name `shared.training.train.BankEnsemble`
in their pickle (and in `metadata.model_class`); this re-export lets them load. New models name
`shared.jobs.training.model.BankEnsemble`."""

from shared.jobs.training.model import BankEnsemble

__all__ = ["BankEnsemble"]
