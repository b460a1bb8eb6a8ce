"""Kept for models saved before the training code moved to `shared.jobs.training`: they unpickle
`shared.training.train.BankEnsemble`. New code imports `shared.jobs.training`."""
