"""The training step: train (features, FLAML search, LightGBM members, threshold), save the MLflow model, track
the run, evaluate on held-out rows. Its process entry is `job`; `model` is what a saved model unpickles."""
