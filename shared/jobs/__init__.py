"""Azure ML job code: what runs inside an Azure ML job, and what describes a job to Azure ML.

Runs inside Azure ML (a process entry on the compute, `python -m ...`; imports only the domain, the scoring
runtime and shared infrastructure, never services, adapters or bootstrap):
  training/        the training step: `python -m shared.jobs.training.job` (the local pipeline endpoint runs the same)
  drift_job.py     the drift job's `profile` / `merge` steps: `python -m shared.jobs.drift_job`

Describes a job to Azure ML (azure-ai-ml entities, built without a subscription; adapters and tools use them):
  environment.py   the jobs' environment (pinned training requirements) and the staged code (`shared/`)
  publish.py       the training command component, its pipeline component and batch deployment (`retrain azure publish`)
  drift_pipeline.py  the drift job as a pipeline of N parallel `profile` steps and one `merge`

Nothing here is imported when this package is: a saved model unpickles `shared.jobs.training.model` in a
serving environment that has only the model's own copy of that module (see training/mlflow_model.py).
"""
