"""shared.redaction: each kind of secret is masked in text, URLs, structured attributes and log records."""

from __future__ import annotations

import logging
import secrets

import pytest

from shared import redaction
from shared.redaction import REDACTED, redact


@pytest.fixture(autouse=True)
def clean_registry():
    redaction.forget_all()
    yield
    redaction.forget_all()


def token() -> str:
    return secrets.token_urlsafe(32)


@pytest.mark.parametrize("name", redaction.SECRET_SETTINGS)
def test_every_secret_setting_value_is_masked_once_registered_from_the_environment(name):
    value = token()
    redaction.register_environment({name: value, "PIPELINE_TOKEN_SCOPE": "https://management.azure.com/.default"})
    text = redact(f"calling with {value} inside, and again:{value}.")
    assert value not in text and text.count(REDACTED) == 2
    assert redact("scope https://management.azure.com/.default") == "scope https://management.azure.com/.default"


def test_the_named_settings_cover_the_stack_secrets():
    for name in ("WEBHOOK_SECRET", "WEBHOOK_SECRET_PREVIOUS", "SCORING_KEY", "SCORING_ADMIN_KEY",
                 "LOCAL_PIPELINE_TOKEN", "AzureWebJobsStorage", "EVENTGRID_WEBHOOK_URL"):
        assert name in redaction.SECRET_SETTINGS


def test_a_registered_connection_string_registers_its_account_key_and_sas():
    key = token()
    sas_sig = token()
    redaction.register_environment({
        "AzureWebJobsStorage": f"DefaultEndpointsProtocol=http;AccountName=dev;AccountKey={key};BlobEndpoint=x",
        "INFERENCE_STORAGE": f"BlobEndpoint=https://a/;SharedAccessSignature=sv=2024&sig={sas_sig}"})
    assert key in redaction.registered() and sas_sig in redaction.registered()
    assert key not in redact(f"the key alone: {key}")
    assert sas_sig not in redact(f"the signature alone: {sas_sig}")


def test_a_registered_url_registers_its_code():
    key = token()
    redaction.register_environment({"EVENTGRID_WEBHOOK_URL": f"http://127.0.0.1:7071/runtime/webhooks/eventgrid"
                                                             f"?functionName=run_completed&code={key}"})
    assert key not in redact(f"posted with key {key}")


def test_short_values_are_not_registered():
    redaction.register("abc", "", None)
    assert redaction.registered() == ()
    assert redact("abc is a word") == "abc is a word"


@pytest.mark.parametrize(("text", "secret"), [
    ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=S3CRETKEY==;EndpointSuffix=x", "S3CRETKEY"),
    ("Endpoint=sb://x/;SharedAccessKeyName=root;SharedAccessKey=SAKEYVALUE", "SAKEYVALUE"),
    ("BlobEndpoint=https://a/;SharedAccessSignature=sv=2024-01-01&ss=b&sp=r&sig=SIGPART%2Fx;", "SIGPART"),
    ("InstrumentationKey=11111111-2222-3333-4444-555555555555;IngestionEndpoint=https://x/", "11111111-2222"),
    ("GET https://app.azurewebsites.net/api/retrain?code=FUNCKEY123&x=1", "FUNCKEY123"),
    ("POST /runtime/webhooks/eventgrid?functionName=run_completed&code=SYSKEY456", "SYSKEY456"),
    ("https://acct.blob.core.windows.net/c/b?sv=2024-01-01&se=2030-01-01&sp=r&sig=SASSIGVALUE", "SASSIGVALUE"),
    ("headers: {'x-functions-key': 'HEADERKEY789'}", "HEADERKEY789"),
    ("x-functions-key: HEADERKEY789", "HEADERKEY789"),
    ("Authorization: Bearer BEARERTOKEN.abc", "BEARERTOKEN"),
    ("authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3OCJ9.c2lnbmF0dXJl leaked", "eyJzdWIiOiIxMjM0NTY3OCJ9"),
    ('{"primaryKey": "PRIMARYKEYVALUE", "secondaryKey": "SECONDARYKEY"}', "PRIMARYKEYVALUE"),
    ('{"primaryKey": "PRIMARYKEYVALUE", "secondaryKey": "SECONDARYKEY"}', "SECONDARYKEY"),
    ("client_secret=CLIENTSECRETVALUE&grant_type=client_credentials", "CLIENTSECRETVALUE"),
    ("masterKey: MASTERKEYVALUE", "MASTERKEYVALUE"),
])
def test_recognisable_secrets_are_masked_without_registration(text, secret):
    out = redact(text)
    assert secret not in out and REDACTED in out


def test_what_is_not_secret_stays_readable():
    url = "https://acct.blob.core.windows.net/c/b?sv=2024-01-01&se=2030-01-01&sp=r&sig=SASSIGVALUE"
    assert redact(url) == f"https://acct.blob.core.windows.net/c/b?sv=2024-01-01&se=2030-01-01&sp=r&sig={REDACTED}"
    plain = "run run-7 completed: dataset bankmarketing v3, auc 0.91, Basic checks passed"
    assert redact(plain) == plain


def test_a_custom_mask_and_extra_values():
    assert redact("key k-123456789 and Bearer tok", "***", extra={"k-123456789"}) == "key *** and Bearer ***"


def test_redact_url_drops_the_query_and_redact_query_masks_only_secret_parameters():
    assert redaction.redact_url("https://h/api/retrain?code=abc&x=1") == "https://h/api/retrain?…"
    assert redaction.redact_url("https://h/api/retrain") == "https://h/api/retrain"
    assert redaction.redact_query("functionName=f&code=SECRETCODE&sig=SIGSIG") == \
        f"functionName=f&code={REDACTED}&sig={REDACTED}"
    assert redaction.redact_query("x=1") == "x=1"


def test_sensitive_keys_in_structured_attributes():
    for key in ("api_key", "sas_token", "password", "Authorization", "connection_string", "client_secret",
                "functionKey", "x-functions-key", "webhook_secret", "SCORING_ADMIN_KEY"):
        assert redaction.is_sensitive(key), key
    for key in ("run_id", "dataset_version", "blob", "model_version"):
        assert not redaction.is_sensitive(key), key
    tree = redaction.redact_tree({"nested": {"token": "T0KENVALUE"}, "note": "Bearer ABCDEFGH", "n": 1})
    assert tree == {"nested": {"token": REDACTED}, "note": f"Bearer {REDACTED}", "n": 1}


@pytest.fixture
def installed(monkeypatch):
    """install_logging() for one test: the process's record factory is restored afterwards."""
    monkeypatch.setattr(redaction, "_installed", False)
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)


def test_installed_logging_masks_messages_arguments_and_tracebacks(caplog, installed):
    value = token()
    redaction.install_logging({"SCORING_KEY": value})
    logger = logging.getLogger("shared.test_redaction")
    with caplog.at_level(logging.INFO, logger="shared.test_redaction"):
        logger.info("key %s in an argument", value)
        logger.info(f"key {value} in the message")
        logger.warning("%s %s %s", "GET", "/api/x?code=QUERYKEY1", 200)  # shape kept for formatters that unpack
        try:
            raise RuntimeError(f"service said Authorization: Bearer {value}")
        except RuntimeError:
            logger.exception("call failed")
    assert value not in caplog.text and "QUERYKEY1" not in caplog.text
    assert caplog.records[2].args == ("GET", f"/api/x?code={REDACTED}", 200)
    handler_text = logging.Formatter().format(caplog.records[-1])
    assert value not in handler_text and "RuntimeError" in handler_text


def test_a_redacting_filter_masks_records_made_elsewhere():
    value = token()
    redaction.register(value)
    record = logging.makeLogRecord({"msg": "leak %s", "args": (value,), "levelno": logging.INFO})
    assert redaction.RedactingFilter().filter(record)
    assert value not in record.getMessage()
