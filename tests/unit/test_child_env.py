"""Job processes start with an allowlisted environment: the basics Python needs, never the parent's secrets."""

from __future__ import annotations

from shared.child_env import is_allowed, minimal_env

PARENT = {
    "PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TMPDIR": "/tmp/x",
    "OMP_NUM_THREADS": "1", "PYTHONPATH": "/src", "VIRTUAL_ENV": "/venv",
    "LOCAL_PIPELINE_TOKEN": "tok-123456789", "SCORING_KEY": "sk-123456789", "SCORING_ADMIN_KEY": "ak-123456789",
    "WEBHOOK_SECRET": "ws-123456789", "WEBHOOK_SECRET_PREVIOUS": "wp-123456789",
    "AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=k==",
    "INFERENCE_STORAGE": "AccountKey=k2==",
    "EVENTGRID_WEBHOOK_URL": "http://127.0.0.1:7071/runtime/webhooks/eventgrid?code=systemkey",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=ik", "AZURE_CLIENT_SECRET": "cs",
    "RETRAIN_FUNCTION_KEY": "fk", "MLFLOW_TRACKING_URI": "file:///x", "SOMETHING_ELSE": "x",
}


def test_only_the_allowlist_passes():
    env = minimal_env(environ=PARENT)
    assert env == {k: PARENT[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OMP_NUM_THREADS",
                                          "PYTHONPATH", "VIRTUAL_ENV")}


def test_what_the_caller_hands_over_is_added_and_wins():
    env = minimal_env({"AzureWebJobsStorage": "conn", "PATH": "/bin"}, environ=PARENT)
    assert env["AzureWebJobsStorage"] == "conn" and env["PATH"] == "/bin"
    assert not {"SCORING_KEY", "LOCAL_PIPELINE_TOKEN", "EVENTGRID_WEBHOOK_URL", "WEBHOOK_SECRET"} & set(env)


def test_no_secret_setting_is_allowed():
    from shared.redaction import SECRET_SETTINGS

    assert not [name for name in SECRET_SETTINGS if is_allowed(name)]
    assert is_allowed("LC_CTYPE") and not is_allowed("LCX") and not is_allowed("path")
