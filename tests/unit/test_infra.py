"""infra/ (Bicep for `azd up`) against the code it deploys, without a Bicep compiler or a subscription.

(a) Every app setting the deployed code reads is set by infra/ and listed in local.settings.sample.json: the
    typed settings are found by calling `Settings.from_env` with a mapping that records each name it reads, the
    others (secrets, telemetry, the blob trigger's source) by an AST scan of shared/, function_app/ and main.py that
    must account for every environment read there, so a new `os.environ` read fails this test until it is
    classified here. The values infra/ sets must parse with `Settings.from_env` and equal the code's defaults
    unless listed as deliberate.
(b) The Event Grid subscriptions (made by infra/scripts/postdeploy.sh after `azd deploy`, run here against
    recording stand-ins for az, azd and curl) point at functions the real app registers, indexed as the Python
    worker does with the app settings infra/ sets: uploads at a blobTrigger whose source is EventGrid through the
    blobs extension webhook and its system key, Azure ML run events at an eventGridTrigger through the Event Grid
    extension webhook and its key.
(c) Bicep hygiene a compiler would otherwise catch: balanced brackets, every param and var used, module files
    exist and get exactly the params they declare, resource types and API versions from a reviewed list, the
    azd parameters file matches main.bicep, and azure.yaml points at infra/ and the Python app at the root.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

import shared.settings as settings_module
from shared.domain.run_events import RUN_COMPLETED, RUN_STATUS_CHANGED, RunEvent
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN_BICEP = INFRA / "main.bicep"
POSTDEPLOY = INFRA / "scripts" / "postdeploy.sh"
SAMPLE = ROOT / "local.settings.sample.json"

# ---------------------------------------------------------------------------------------------------------------
# (a) The app settings the code reads
# ---------------------------------------------------------------------------------------------------------------

# Read outside the typed settings, found with `grep -rnE "os.environ|getenv|env\.get|\.extra" shared function_app`
# (the AST scan below checks this list is complete and not stale). Declared, with their meaning, in
# shared/settings.py (SECRETS, OTHER_SETTINGS read by the app), which docs/settings.md is generated from.
SECRET_SETTINGS = {s.name for s in settings_module.SECRETS}
OTHER_APP_SETTINGS = {s.name for s in settings_module.OTHER_SETTINGS if s.reader is settings_module.Reader.APP}
# Environment reads in shared/ and tools/ that are not settings of the deployed app.
NOT_APP_SETTINGS = {
    "USER", "USERNAME",  # tools/cli: who the audit names for promote/rollback
    "RETRAIN_BASE_URL", "RETRAIN_FUNCTION_KEY", "RETRAIN_WEBHOOK_SECRET",  # tools/cli: the CLI as a client
    "MLFLOW_ALLOW_FILE_STORE",  # shared/jobs/training/tracking.py: the training process
    "STORAGE_ACCOUNT_RESOURCE_ID",  # tools/azure_doctor: `retrain azure doctor` only
}
# Functions whose callers name the setting (reads inside them use the parameter): (file, function) -> the index
# of the argument holding the name at the call sites.
DYNAMIC_READERS = {
    ("shared/bootstrap.py", "_secret"): 0,
    ("shared/bootstrap.py", "secret_value"): 0,
    ("tools/cli/keys.py", "source"): 0,
}
# Functions that read the environment only to learn values to mask (shared.redaction registers the value of every
# secret setting it names, set or not): not settings reads. test_every_secret_setting_is_redacted keeps that list
# a superset of SECRET_SETTINGS.
MASK_ONLY_READERS = {("shared/redaction.py", "register_environment")}
# Functions that read the names the settings declaration gives (shared/settings.py `setting(...)`): what they read
# is recorded by calling them (recorded_settings_reads), and test_settings_reads_are_recorded checks it is exactly
# the declared names.
DECLARED_READERS = {("shared/settings.py", "from_env")}
# Not set by infra/, on purpose.
INFRA_EXEMPT = {
    "AzureWebJobsStorage": "identity-based instead: AzureWebJobsStorage__credential/__clientId/__*ServiceUri",
    "LOCAL_PIPELINE_TOKEN": "local pipeline endpoint only",
    "SCORING_KEY": "local scoring server only; in Azure the endpoint key is read through the workspace",
    "SCORING_ADMIN_KEY": "local scoring server only",
    "SCORING_URL": "local scoring server only; in Azure the scoring URI is read through the workspace",
    "RETRAIN_LOCAL_DIR": "local stack state folder",
}
# Set by infra/ for the platform (the Functions host, the Python worker, azure-identity), not read by our code.
PLATFORM_SETTINGS = {
    "PYTHON_SCRIPT_FILE_NAME", "AZURE_CLIENT_ID", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT",  # the host's body cap: test_the_host_body_cap_is_what_the_routes_need
    "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId", "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri", "AzureWebJobsStorage__tableServiceUri",
}
# Not allowed on the Flex Consumption plan (runtime and deployment live in functionAppConfig there).
FLEX_UNSUPPORTED = {
    "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY", "FUNCTIONS_WORKER_PROCESS_COUNT", "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD", "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_CONTENTSHARE", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_NODE_DEFAULT_VERSION", "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
}
# Settings fields whose value in Azure deliberately differs from the code's default.
DELIBERATE_DIFFERENCES = {
    "mode",  # RETRAIN_MODE=azure
    "storage_account_url",  # the account's blob endpoint, with the managed identity
    "pipeline_kind",  # a parameter (default batch-endpoint, the default of the setting too)
    "pipeline_endpoint_url", "azureml_workspace_id",
    "azureml_arm_url",  # environment().resourceManager: the Resource Manager of the cloud deployed to
    "pipeline_datastore",  # the identity-based datastore infra/ registers over DATASETS_CONTAINER
    "inference_datastore",  # workspaceblobstore: where Azure ML's data collector writes
    "azure_subscription_id", "azure_resource_group", "azureml_workspace_name",
    "online_endpoint",  # endpoint names are unique per region: score-<token>
    "extra",
}


def recorded_settings_reads(monkeypatch) -> set[str]:
    """Every name `Settings.from_env` reads, with an environment that passes its validation in azure mode."""
    reads: set[str] = set()

    class Recording(dict):
        def get(self, key, default=None):
            reads.add(key)
            return super().get(key, default)

        def __getitem__(self, key):
            reads.add(key)
            return super().__getitem__(key)

        def __contains__(self, key):
            reads.add(key)
            return super().__contains__(key)

    env = Recording(RETRAIN_MODE="azure", STORAGE_ACCOUNT_URL="https://acct.blob.core.windows.net/",
                    PIPELINE_ENDPOINT_URL="https://pipeline.invalid/jobs", AZURE_SUBSCRIPTION_ID="sub",
                    AZURE_RESOURCE_GROUP="rg", AZUREML_WORKSPACE_NAME="ws",
                    AZUREML_WORKSPACE_ID="/subscriptions/sub/resourceGroups/rg/providers/"
                                         "Microsoft.MachineLearningServices/workspaces/ws")
    # from_env copies its mapping with dict(...): make that copy record too.
    monkeypatch.setattr(settings_module, "dict", Recording, raising=False)
    Settings.from_env(env)
    monkeypatch.undo()
    return reads


@dataclass
class EnvReads:
    names: dict[str, list[str]] = field(default_factory=dict)  # name -> ["file:line", ...]
    unresolved: list[str] = field(default_factory=list)  # "file:line" of reads whose name is not a constant

    def add(self, name: str, where: str) -> None:
        self.names.setdefault(name, []).append(where)


def _is_env(node: ast.AST) -> bool:
    """os.environ, a mapping named env/environ/environment, Settings.extra (or `x or {}` of one)."""
    if isinstance(node, ast.Attribute):
        return node.attr == "extra" or (node.attr == "environ" and isinstance(node.value, ast.Name)
                                         and node.value.id == "os")
    if isinstance(node, ast.Name):
        return node.id in ("env", "environ", "environment")
    if isinstance(node, ast.BoolOp):
        return any(_is_env(v) for v in node.values)
    return False


def scan_env_reads(paths: list[Path]) -> EnvReads:
    found = EnvReads()
    for path in paths:
        _scan_file(path, found)
    return found


def _scan_file(path: Path, found: EnvReads) -> None:
    rel = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                 for t in n.targets if isinstance(t, ast.Name)}

    def name_of(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        return None

    def read_key(node: ast.AST) -> ast.AST | None:
        """The key expression when `node` reads the environment."""
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            is_get = node.func.attr == "get" and _is_env(node.func.value)
            is_getenv = node.func.attr == "getenv" and isinstance(node.func.value, ast.Name) \
                and node.func.value.id == "os"
            return node.args[0] if is_get or is_getenv else None
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_env(node.value):
            return node.slice
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In | ast.NotIn) \
                and _is_env(node.comparators[0]):
            return node.left
        return None

    def visit(node: ast.AST, function: str | None) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        key = read_key(node)
        if key is not None and (rel, function) not in MASK_ONLY_READERS:
            name = name_of(key)
            if name is not None:
                found.add(name, where)
            elif (rel, function) not in DYNAMIC_READERS and (rel, function) not in DECLARED_READERS:
                found.unresolved.append(where)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and (rel, node.func.id) in DYNAMIC_READERS:
            index = DYNAMIC_READERS[(rel, node.func.id)]
            name = name_of(node.args[index]) if len(node.args) > index else None
            if name is None:
                found.unresolved.append(where)
            else:
                found.add(name, where)
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, None)


def scanned_python_files() -> list[Path]:
    """The deployed code and the operator tools (tools/ reads the same settings names)."""
    files = [ROOT / "main.py"]
    for folder in ("shared", "function_app", "tools"):
        files += sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)
    return files


@pytest.fixture(scope="module")
def env_reads() -> EnvReads:
    return scan_env_reads(scanned_python_files())


@pytest.fixture
def settings_reads(monkeypatch) -> set[str]:
    return recorded_settings_reads(monkeypatch)


@pytest.fixture
def app_settings(settings_reads) -> set[str]:
    """What the deployed app reads: the typed settings plus the ones read beside them."""
    return settings_reads | SECRET_SETTINGS | OTHER_APP_SETTINGS


def test_settings_reads_are_recorded(settings_reads):
    """The recording mapping sees what from_env reads: exactly the declared settings (a check of the mechanism
    against the declaration, and of from_env against the AST: nothing in settings.py reads a name of its own)."""
    declared = {f.metadata["env"] for f in settings_module.declared_fields()}
    assert settings_reads == declared, sorted(settings_reads ^ declared)
    scanned = set(scan_env_reads([ROOT / "shared" / "settings.py"]).names)
    assert scanned <= settings_reads, sorted(scanned - settings_reads)
    assert {"RETRAIN_MODE", "AzureWebJobsStorage", "STORAGE_ACCOUNT_URL", "PIPELINE_ENDPOINT_URL",
            "OUTBOX_SCHEDULE", "DRIFT_PARTITIONS"} <= settings_reads


def test_every_environment_read_is_classified(env_reads, settings_reads):
    """A new os.environ / env.get read in shared/ or function_app/ fails here until it is listed above (and then
    infra/ and local.settings.sample.json must carry it, or an exemption says why not)."""
    assert not env_reads.unresolved, f"environment reads with a computed name: {env_reads.unresolved}"
    classified = settings_reads | SECRET_SETTINGS | OTHER_APP_SETTINGS | NOT_APP_SETTINGS
    unknown = {n: w for n, w in env_reads.names.items() if n not in classified}
    assert not unknown, f"unclassified environment reads (add them to the lists in this test): {unknown}"
    listed = SECRET_SETTINGS | OTHER_APP_SETTINGS | NOT_APP_SETTINGS
    stale = sorted(listed - set(env_reads.names))
    assert not stale, f"listed here but no longer read anywhere: {stale}"


def test_every_secret_setting_is_redacted():
    """Every secret the deployed app reads is one shared.redaction masks in logs, spans and errors."""
    from shared import redaction

    missing = sorted(SECRET_SETTINGS - set(redaction.SECRET_SETTINGS))
    assert not missing, f"secret settings shared.redaction.SECRET_SETTINGS does not name: {missing}"


def test_infra_sets_every_app_setting(app_settings):
    infra = set(infra_app_settings())
    missing = sorted(n for n in app_settings - infra if n not in INFRA_EXEMPT)
    assert not missing, f"app settings the code reads that infra/main.bicep does not set: {missing}"
    assert {"AzureWebJobsStorage__credential", "AzureWebJobsStorage__blobServiceUri"} <= infra  # the exemption
    unknown = sorted(infra - app_settings - PLATFORM_SETTINGS)
    assert not unknown, f"infra/ sets settings nothing reads (typo?): {unknown}"
    assert not infra & FLEX_UNSUPPORTED, sorted(infra & FLEX_UNSUPPORTED)
    assert not set(INFRA_EXEMPT) & infra, "an exempt setting is set after all: drop its exemption"


def test_infra_values_parse_and_keep_the_code_defaults():
    """The literal values infra/ writes are valid settings and the code's defaults unless deliberately not."""
    values = resolved_infra_settings()
    env = {name: value if value is not None else f"https://placeholder.invalid/{name}"
           for name, value in values.items()}
    deployed = Settings.from_env(env)
    default = Settings()
    differ = sorted(f.name for f in fields(Settings) if getattr(deployed, f.name) != getattr(default, f.name))
    assert set(differ) <= DELIBERATE_DIFFERENCES, sorted(set(differ) - DELIBERATE_DIFFERENCES)
    assert values["RETRAIN_MODE"] == "azure"
    assert values["BLOB_TRIGGER_SOURCE"] == "EventGrid"
    assert values["PYTHON_SCRIPT_FILE_NAME"] == "main.py"
    assert values["AzureWebJobsStorage__credential"] == "managedidentity"


def test_infra_creates_the_containers_and_tables_the_settings_name():
    """Containers and tables the settings default to exist before the app first runs (the Event Grid filter and
    the blob trigger need `incoming`)."""
    default = Settings()
    containers = {getattr(default, f.name) for f in fields(Settings) if f.name.endswith("_container")}
    tables = {getattr(default, f.name) for f in fields(Settings) if f.name.endswith("_table")}
    assert containers == {"incoming", "datasets", "quarantine", "inference-data", "drift-reports"}
    assert tables == {"audit", "runs", "datasets", "models", "webhook", "outbox"}
    main = Bicep(MAIN_BICEP)
    storage = main.module_params("storage")
    created_containers = {main.resolve(v) for v in list_items(storage["containers"])}
    created_tables = {main.resolve(v) for v in list_items(storage["tables"])}
    assert containers <= created_containers, sorted(containers - created_containers)
    assert tables == created_tables


def test_local_settings_sample_lists_every_app_setting(app_settings):
    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))["Values"]
    missing = sorted(app_settings - set(sample))
    assert not missing, f"local.settings.sample.json lacks: {missing}"
    Settings.from_env(sample)  # and what it holds is valid
    for secret in ("WEBHOOK_SECRET", "WEBHOOK_SECRET_PREVIOUS", "LOCAL_PIPELINE_TOKEN", "SCORING_ADMIN_KEY"):
        assert sample[secret] == "", f"{secret}: a sample must not carry a usable secret"


def test_binding_expressions_and_connections_are_app_settings(indexed_app):
    """%NAME% in a binding is resolved from app settings by the host; a `connection` is a setting prefix."""
    infra = set(infra_app_settings())
    sample = set(json.loads(SAMPLE.read_text(encoding="utf-8"))["Values"])
    for name, function in indexed_app.items():
        for binding in function["bindings"]:
            for value in binding.values():
                for expr in re.findall(r"%([A-Za-z0-9_]+)%", str(value)) if isinstance(value, str) else []:
                    assert expr in infra and expr in sample, (name, expr)
            connection = binding.get("connection")
            if connection:
                assert f"{connection}__blobServiceUri" in infra or connection in infra, (name, connection)
                assert connection in sample, (name, connection)


# ---------------------------------------------------------------------------------------------------------------
# (b) Event Grid subscriptions -> functions the app registers
# ---------------------------------------------------------------------------------------------------------------

INDEX = """
import json, sys
from local.functions_host.loader import index_app
print(json.dumps({f.name: {"trigger": f.trigger_type, "bindings": f.bindings} for f in index_app(sys.argv[1])}))
"""


@pytest.fixture(scope="module")
def indexed_app() -> dict:
    """The real app indexed in a fresh interpreter as the worker does, with the settings infra/ gives it."""
    values = resolved_infra_settings()
    env = {k: v for k, v in os.environ.items() if k not in values and k != "PYTHON_SCRIPT_FILE_NAME"}
    env.update({k: v for k, v in values.items() if v is not None})
    proc = subprocess.run([sys.executable, "-c", INDEX, str(ROOT)], cwd="/", env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


HOOK_ENV = {
    "AZURE_FUNCTION_APP_NAME": "func-abc", "AZURE_RESOURCE_GROUP": "rg-test",
    "RETRAIN_BASE_URL": "https://func-abc.azurewebsites.net", "STORAGE_EVENTS_TOPIC_NAME": "evgt-abc-storage",
    "INCOMING_CONTAINER": "incoming",
    "AZUREML_WORKSPACE_ID": "/subscriptions/s/resourceGroups/rg-test/providers/"
                            "Microsoft.MachineLearningServices/workspaces/mlw-abc",
    "AZURE_SUBSCRIPTION_ID": "s",
}
SYSTEM_KEYS = {"blobs_extension": "KEY-blobs", "eventgrid_extension": "KEY-eventgrid"}

# Records each call; for `--body @file` also the file's content and the modes of the file and its folder, read
# while the script still has them (it deletes them on exit).
AZ_STUB = """#!{python}
import json, os, stat, sys
args = sys.argv[1:]
record = {{"argv": ["az", *args]}}
if "--body" in args and args[args.index("--body") + 1].startswith("@"):
    path = args[args.index("--body") + 1][1:]
    record.update(body=open(path).read(), mode=stat.S_IMODE(os.stat(path).st_mode),
                  dir_mode=stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), path=path)
with open(os.environ["STUB_LOG"], "a") as fh:
    fh.write(json.dumps(record) + "\\n")
if args[:3] == ["functionapp", "keys", "list"]:
    query = args[args.index("--query") + 1]
    print({keys!r}.get(query.removeprefix("systemKeys."), ""))
"""
AZD_STUB = """#!{python}
import json, os, sys
with open(os.environ["STUB_LOG"], "a") as fh:
    fh.write(json.dumps({{"argv": ["azd", *sys.argv[1:]]}}) + "\\n")
if sys.argv[1:] == ["env", "get-values"]:
    for key, value in {env!r}.items():
        print(f'{{key}}="{{value}}"')
"""
CURL_STUB = "#!/bin/sh\nexit 0\n"


def run_hook(tmp_path: Path, *, from_azd: bool) -> list[dict]:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, text in (("az", AZ_STUB.format(python=sys.executable, keys=SYSTEM_KEYS)),
                       ("azd", AZD_STUB.format(python=sys.executable, env=HOOK_ENV)), ("curl", CURL_STUB)):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    log = tmp_path / "calls.jsonl"
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "STUB_LOG": str(log), "HOME": str(tmp_path)}
    if not from_azd:
        env.update(HOOK_ENV)
    proc = subprocess.run(["sh", str(POSTDEPLOY)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for key in SYSTEM_KEYS.values():  # the keys are never printed
        assert key not in proc.stdout + proc.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def _argvs(calls: list[dict]) -> list[list[str]]:
    return [c["argv"] for c in calls]


def _option(args: list[str], name: str) -> list[str]:
    """The values after `name` up to the next --option."""
    if name not in args:
        return []
    start = args.index(name) + 1
    end = next((i for i in range(start, len(args)) if args[i].startswith("--")), len(args))
    return args[start:end]


@dataclass
class Subscription:
    """One event subscription PUT through `az rest` (Event Grid REST API, Event Subscriptions - Create Or Update)."""

    call: dict

    @property
    def url(self):
        return urlsplit(_option(self.call["argv"], "--url")[0])

    @property
    def scope(self) -> str:
        """The ARM id the subscription is created under (before /eventSubscriptions/ or /providers/...)."""
        path = self.url.path
        marker = "/providers/Microsoft.EventGrid/eventSubscriptions/"
        return path.split(marker)[0] if marker in path else path.rsplit("/eventSubscriptions/", 1)[0]

    @property
    def properties(self) -> dict:
        return json.loads(self.call["body"])["properties"]

    @property
    def endpoint(self):
        destination = self.properties["destination"]
        assert destination["endpointType"] == "WebHook"
        return urlsplit(destination["properties"]["endpointUrl"])

    @property
    def webhook(self) -> str:
        return self.endpoint.path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.endpoint.query).items()}

    @property
    def event_types(self) -> set[str]:
        return set(self.properties["filter"]["includedEventTypes"])


def subscriptions(calls: list[dict]) -> list[Subscription]:
    subs = [Subscription(c) for c in calls if c["argv"][:2] == ["az", "rest"]]
    for sub in subs:
        assert _option(sub.call["argv"], "--method") == ["put"]
        assert sub.url.netloc == "management.azure.com" and "api-version=2022-06-15" in sub.url.query
    return subs


@pytest.mark.parametrize("from_azd", [False, True], ids=["azd-hook-env", "by-hand"])
def test_postdeploy_subscribes_the_registered_triggers(tmp_path, indexed_app, from_azd):
    calls = run_hook(tmp_path, from_azd=from_azd)
    if from_azd:
        assert ["azd", "env", "get-values"] in _argvs(calls)
    subs = subscriptions(calls)
    assert len(subs) == 3
    assert {s.webhook for s in subs} == {"/runtime/webhooks/blobs", "/runtime/webhooks/eventgrid"}
    for sub in subs:
        assert f"{sub.endpoint.scheme}://{sub.endpoint.netloc}" == HOOK_ENV["RETRAIN_BASE_URL"]
        extension = sub.webhook.rsplit("/", 1)[1]
        assert sub.query["code"] == SYSTEM_KEYS[f"{extension}_extension"], "wrong system key for the webhook"
        assert sub.properties["retryPolicy"] == {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}

    (blob,) = [s for s in subs if s.webhook == "/runtime/webhooks/blobs"]
    assert blob.query["functionName"].startswith("Host.Functions.")
    target = indexed_app[blob.query["functionName"].removeprefix("Host.Functions.")]
    assert target["trigger"] == "blobTrigger"
    (binding,) = [b for b in target["bindings"] if b["type"] == "blobTrigger"]
    assert binding["source"] == "EventGrid", "with the infra settings the blob trigger must be indexed for Event Grid"
    assert binding["path"].startswith("%INCOMING_CONTAINER%/")
    assert blob.event_types == {"Microsoft.Storage.BlobCreated"}
    assert blob.scope == (f"/subscriptions/{HOOK_ENV['AZURE_SUBSCRIPTION_ID']}/resourceGroups/"
                          f"{HOOK_ENV['AZURE_RESOURCE_GROUP']}/providers/Microsoft.EventGrid/systemTopics/"
                          f"{HOOK_ENV['STORAGE_EVENTS_TOPIC_NAME']}")
    assert blob.properties["filter"]["subjectBeginsWith"] == \
        f"/blobServices/default/containers/{HOOK_ENV['INCOMING_CONTAINER']}/blobs/"

    ml = [s for s in subs if s.webhook == "/runtime/webhooks/eventgrid"]
    for sub in ml:
        assert indexed_app[sub.query["functionName"]]["trigger"] == "eventGridTrigger"
        assert sub.scope == HOOK_ENV["AZUREML_WORKSPACE_ID"]
    assert {t.lower() for s in ml for t in s.event_types} == {RUN_COMPLETED, RUN_STATUS_CHANGED}
    (status_changed,) = [s for s in ml if {t.lower() for t in s.event_types} == {RUN_STATUS_CHANGED}]
    (advanced,) = status_changed.properties["filter"]["advancedFilters"]
    assert (advanced["key"], advanced["operatorType"]) == ("data.runStatus", "StringIn")
    statuses = advanced["values"]
    # exactly the statuses the handler finishes a run on (the others it ignores)
    assert {s for s in statuses if RunEvent("e", "t", "r", "x", s).outcome == "failed"} == set(statuses)
    assert {"Failed", "Canceled"} == set(statuses)


def test_postdeploy_puts_no_key_on_a_command_line(tmp_path):
    """argv is readable by every local user (ps, /proc/*/cmdline): the system keys travel in 0600 body files in a
    0700 folder, removed when the script ends."""
    calls = run_hook(tmp_path, from_azd=False)
    assert any(c["argv"][:3] == ["az", "functionapp", "keys"] for c in calls)
    for call in calls:
        for key in SYSTEM_KEYS.values():
            assert not any(key in arg for arg in call["argv"]), f"a system key on the command line: {call['argv']}"
    bodies = [c for c in calls if "body" in c]
    assert len(bodies) == 3 and all(any(k in c["body"] for k in SYSTEM_KEYS.values()) for c in bodies)
    for call in bodies:
        assert call["mode"] == 0o600 and call["dir_mode"] == 0o700, call
        assert not Path(call["path"]).exists() and not Path(call["path"]).parent.exists()


def test_postdeploy_reads_only_values_main_bicep_outputs():
    script = POSTDEPLOY.read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", script)) | set(re.findall(r"\$([A-Z][A-Z0-9_]*)", script))
    outputs = Bicep(MAIN_BICEP).declarations("output")
    assert used <= set(outputs), sorted(used - set(outputs))
    assert set(HOOK_ENV) <= used
    assert os.access(POSTDEPLOY, os.X_OK)
    subprocess.run(["sh", "-n", str(POSTDEPLOY)], check=True)


# ---------------------------------------------------------------------------------------------------------------
# (c) Bicep hygiene
# ---------------------------------------------------------------------------------------------------------------

# Resource types and API versions, each taken from the Azure samples the templates follow (Azure-Samples/
# functions-quickstart-python-azd-eventgrid-blob, azure-quickstart-templates machine-learning and AI Foundry
# templates, Flex Consumption samples). A new type or version is reviewed here.
APPROVED_RESOURCE_TYPES = {
    "Microsoft.Resources/resourceGroups": "2024-03-01",
    "Microsoft.ManagedIdentity/userAssignedIdentities": "2023-01-31",
    "Microsoft.OperationalInsights/workspaces": "2023-09-01",
    "Microsoft.Insights/components": "2020-02-02",
    "Microsoft.Storage/storageAccounts": "2023-05-01",
    "Microsoft.Storage/storageAccounts/blobServices": "2023-05-01",
    "Microsoft.Storage/storageAccounts/blobServices/containers": "2023-05-01",
    "Microsoft.Storage/storageAccounts/tableServices": "2023-05-01",
    "Microsoft.Storage/storageAccounts/tableServices/tables": "2023-05-01",
    "Microsoft.KeyVault/vaults": "2023-07-01",
    "Microsoft.KeyVault/vaults/secrets": "2023-07-01",
    "Microsoft.Web/serverfarms": "2024-04-01",
    "Microsoft.Web/sites": "2024-04-01",
    "Microsoft.Web/sites/config": "2024-04-01",
    "Microsoft.EventGrid/systemTopics": "2022-06-15",
    "Microsoft.Authorization/roleAssignments": "2022-04-01",
    "Microsoft.MachineLearningServices/workspaces": "2024-04-01",
    "Microsoft.MachineLearningServices/workspaces/computes": "2024-04-01",
    "Microsoft.MachineLearningServices/workspaces/datastores": "2024-04-01",
}
# Built-in role definition ids (Azure RBAC reference). Owner, Contributor, User Access Administrator and Storage
# Blob Data Owner never.
ROLES = {
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",  # app identity
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",  # app identity
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",  # app identity
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",  # app identity
    "f6c7c914-8db3-469d-8ca1-694a8f32e121": "AzureML Data Scientist",  # app identity, on the workspace
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",  # app identity; the developer (uploads)
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",  # the developer (the webhook secret)
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",  # Azure ML: the datastore; app: collected data
}
AZD_PROVIDED = {"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID", "AZURE_PRINCIPAL_TYPE"}


@dataclass
class Token:
    kind: str  # id | str | num | op | nl
    text: str
    interpolations: list[str] = field(default_factory=list)


def _string_end(text: str, i: int, interpolations: list[str]) -> int:
    """Index after the string literal opening at text[i] (a quote); collects its ${...} expressions."""
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2
        elif c == "'":
            return j + 1
        elif text.startswith("${", j):
            end = _code_end(text, j + 2)
            interpolations.append(text[j + 2:end - 1])
            j = end
        elif c == "\n":
            raise ValueError(f"line break in a string literal at {text[:j].count(chr(10)) + 1}")
        else:
            j += 1
    raise ValueError("unterminated string literal")


def _code_end(text: str, i: int) -> int:
    """Index after the `}` closing an interpolation that starts at text[i]."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c == "'":
            i = _string_end(text, i, [])
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return i + 1
            depth -= 1
        i += 1
    raise ValueError("unterminated interpolation")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\n":
            tokens.append(Token("nl", c))
            i += 1
        elif c in " \t\r":
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif text.startswith("/*", i):
            i = text.index("*/", i + 2) + 2
        elif text.startswith("'''", i):
            end = text.index("'''", i + 3) + 3
            tokens.append(Token("str", text[i:end]))
            i = end
        elif c == "'":
            interpolations: list[str] = []
            end = _string_end(text, i, interpolations)
            tokens.append(Token("str", text[i:end], interpolations))
            i = end
        elif c.isalpha() or c == "_":
            m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(text, i)
            tokens.append(Token("id", m.group()))
            i = m.end()
        elif c.isdigit():
            m = re.compile(r"\d+").match(text, i)
            tokens.append(Token("num", m.group()))
            i = m.end()
        else:
            two = text[i:i + 2]
            op = two if two in ("??", ".?", "==", "!=", "<=", ">=", "&&", "||", "=~", "!~") else c
            tokens.append(Token("op", op))
            i += len(op)
    return tokens


def _literal(token: Token) -> str | None:
    if token.kind == "str" and not token.interpolations and not token.text.startswith("'''"):
        return token.text[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    return None


class Bicep:
    def __init__(self, path: Path):
        self.path = path
        self.tokens = tokenize(path.read_text(encoding="utf-8"))

    def _starts(self) -> Iterator[int]:
        """Indexes of tokens that begin a line."""
        for i in range(len(self.tokens)):
            if i == 0 or self.tokens[i - 1].kind == "nl":
                yield i

    def declarations(self, keyword: str) -> dict[str, int]:
        """name -> token index of `keyword name` statements (param, var, resource, module, output)."""
        return {self.tokens[i + 1].text: i for i in self._starts()
                if self.tokens[i].kind == "id" and self.tokens[i].text == keyword
                and i + 1 < len(self.tokens) and self.tokens[i + 1].kind == "id"}

    def _line(self, start: int) -> list[Token]:
        end = start
        while end < len(self.tokens) and self.tokens[end].kind != "nl":
            end += 1
        return self.tokens[start:end]

    def params(self) -> dict[str, list[Token] | None]:
        """name -> the default value's tokens, or None when the param has no default (required)."""
        out = {}
        for name, i in self.declarations("param").items():
            line = self._line(i)
            eq = next((k for k, t in enumerate(line) if t.kind == "op" and t.text == "="), None)
            out[name] = None if eq is None else line[eq + 1:]
        return out

    def symbol_uses(self) -> dict[str, int]:
        """How often each identifier is used as a symbol (not as an object key or a property name)."""
        counts: dict[str, int] = {}

        def count(tokens: list[Token]) -> None:
            for k, tok in enumerate(tokens):
                for expr in tok.interpolations:
                    count(tokenize(expr))
                if tok.kind != "id":
                    continue
                before = tokens[k - 1] if k else None
                after = tokens[k + 1] if k + 1 < len(tokens) else None
                is_property = before is not None and before.kind == "op" and before.text in (".", ".?")
                is_key = (before is None or before.kind == "nl" or (before.kind == "op" and before.text in "{,")) \
                    and after is not None and after.kind == "op" and after.text == ":"
                if not (is_property or is_key):
                    counts[tok.text] = counts.get(tok.text, 0) + 1

        count(self.tokens)
        return counts

    def block(self, start: int) -> tuple[int, int]:
        """(index of the first `{` at or after start, index of its matching `}`)."""
        open_at = next(k for k in range(start, len(self.tokens)) if self.tokens[k].text == "{")
        depth = 0
        for k in range(open_at, len(self.tokens)):
            if self.tokens[k].kind == "op" and self.tokens[k].text in "{[(":
                depth += 1
            elif self.tokens[k].kind == "op" and self.tokens[k].text in "}])":
                depth -= 1
                if depth == 0:
                    return open_at, k
        raise ValueError(f"{self.path}: unbalanced block")

    def object_entries(self, open_at: int) -> dict[str, list[Token]]:
        """Keys at the first level of the object literal opening at tokens[open_at], with their value tokens."""
        _, close = self.block(open_at)
        entries: dict[str, list[Token]] = {}
        k = open_at + 1
        while k < close:
            tok = self.tokens[k]
            if tok.kind in ("nl",) or tok.text == ",":
                k += 1
                continue
            key = tok.text if tok.kind == "id" else _literal(tok)
            assert key is not None and self.tokens[k + 1].text == ":", f"{self.path}: bad object entry {tok.text}"
            value_start = k = k + 2
            depth = 0
            while k < close:
                t = self.tokens[k]
                if t.kind == "op" and t.text in "{[(":
                    depth += 1
                elif t.kind == "op" and t.text in "}])":
                    depth -= 1
                elif depth == 0 and (t.kind == "nl" or t.text == ","):
                    break
                k += 1
            entries[key] = self.tokens[value_start:k]
        return entries

    def var_object(self, name: str) -> dict[str, list[Token]]:
        return self.object_entries(self.declarations("var")[name] + 3)

    def module_params(self, module: str) -> dict[str, list[Token]]:
        open_at, close = self.block(self.declarations("module")[module])
        keys = self.object_entries(open_at)
        assert "params" in keys, f"module {module} passes no params"
        params_at = next(k for k in range(open_at, close) if self.tokens[k].text == "params"
                         and self.tokens[k + 1].text == ":")
        return self.object_entries(params_at + 2)

    def resolve(self, value: list[Token]) -> str | None:
        """A setting's value when it is a literal, a param's literal default, string(param), or var.key of an
        object var of literals; None for run-time values (resource outputs, expressions)."""
        texts = [t.text for t in value]
        if len(value) == 1 and _literal(value[0]) is not None:
            return _literal(value[0])
        params = self.params()
        if len(value) == 1 and value[0].kind == "id" and value[0].text in params:
            default = params[value[0].text]
            return self.resolve(default) if default else None
        if len(value) == 4 and texts[0] == "string" and texts[1] == "(" and texts[3] == ")":
            return self.resolve([value[2]])
        if len(value) == 1 and value[0].kind == "num":
            return value[0].text
        if len(value) == 3 and texts[1] == "." and texts[0] in self.declarations("var"):
            entry = self.var_object(texts[0]).get(texts[2])
            return self.resolve(entry) if entry else None
        return None


def list_items(value: list[Token]) -> list[list[Token]]:
    """The items of an array literal `[ a \n b ]` (one per line or comma)."""
    assert value and value[0].text == "[" and value[-1].text == "]"
    items, current = [], []
    for tok in value[1:-1]:
        if tok.kind == "nl" or tok.text == ",":
            if current:
                items.append(current)
            current = []
        else:
            current.append(tok)
    if current:
        items.append(current)
    return items


def infra_app_settings() -> dict[str, list[Token]]:
    return Bicep(MAIN_BICEP).var_object("appSettings")


def resolved_infra_settings() -> dict[str, str | None]:
    main = Bicep(MAIN_BICEP)
    return {name: main.resolve(value) for name, value in infra_app_settings().items()}


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def test_bicep_files_are_well_formed():
    assert MAIN_BICEP in bicep_files() and len(bicep_files()) > 1
    for path in bicep_files():
        tokens = tokenize(path.read_text(encoding="utf-8"))
        pairs = {"}": "{", "]": "[", ")": "("}
        stack: list[str] = []
        for tok in tokens:
            if tok.kind == "op" and tok.text in "{[(":
                stack.append(tok.text)
            elif tok.kind == "op" and tok.text in "}])":
                assert stack and stack.pop() == pairs[tok.text], f"{path}: unbalanced {tok.text}"
        assert not stack, f"{path}: unclosed {stack}"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_param_and_var_is_used(path):
    bicep = Bicep(path)
    uses = bicep.symbol_uses()
    for keyword in ("param", "var"):
        for name in bicep.declarations(keyword):
            assert uses.get(name, 0) > 1, f"{path.name}: {keyword} {name} is declared but never used"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_modules_exist_and_get_exactly_their_params(path):
    bicep = Bicep(path)
    for module, i in bicep.declarations("module").items():
        target = _literal(bicep.tokens[i + 2])
        assert target and not target.startswith("br"), f"{module}: only local modules here"
        file = (path.parent / target).resolve()
        assert file.is_file(), f"{path.name}: module {module} -> {target} does not exist"
        declared = Bicep(file).params()
        passed = set(bicep.module_params(module))
        assert passed <= set(declared), f"{module}: passes unknown params {sorted(passed - set(declared))}"
        required = {name for name, default in declared.items() if default is None}
        assert required <= passed, f"{module}: misses required params {sorted(required - passed)}"


def test_resource_types_and_api_versions_are_reviewed():
    used = set()
    for path in bicep_files():
        for tok in tokenize(path.read_text(encoding="utf-8")):
            literal = _literal(tok) if tok.kind == "str" else None
            if literal and re.fullmatch(r"Microsoft\.[A-Za-z]+/[A-Za-z/]+@[0-9-]+(-preview)?", literal):
                rtype, version = literal.split("@")
                used.add(rtype)
                assert APPROVED_RESOURCE_TYPES.get(rtype) == version, f"{path.name}: {literal} is not reviewed"
    assert used == set(APPROVED_RESOURCE_TYPES), sorted(set(APPROVED_RESOURCE_TYPES) ^ used)


def test_role_assignments_are_the_least_privilege_set():
    text = "\n".join(p.read_text(encoding="utf-8") for p in bicep_files())
    guids = set(re.findall(r"'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'", text))
    assert guids == set(ROLES), sorted(guids ^ set(ROLES))
    for broad in ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "b24988ac-6180-42a0-ab88-20f7382dd24c",
                  "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",  # Owner, Contributor, User Access Administrator
                  "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"):  # Storage Blob Data Owner
        assert broad not in text


RBAC = INFRA / "app" / "rbac.bicep"
CONTAINER_TYPE = "Microsoft.Storage/storageAccounts/blobServices/containers"


def resources(path: Path) -> dict[str, dict]:
    """resource name -> {"type", "existing", "entries": first-level keys -> value text, "for": the loop source}."""
    bicep = Bicep(path)
    out = {}
    for name, i in bicep.declarations("resource").items():
        rtype = _literal(bicep.tokens[i + 2]).split("@")[0]
        open_at, _ = bicep.block(i)
        header = [t.text for t in bicep.tokens[i + 3:open_at]]
        loop = header[header.index("in") + 1] if "for" in header else None
        entries = {k: " ".join(t.text for t in v) for k, v in bicep.object_entries(open_at).items()}
        out[name] = {"type": rtype, "existing": "existing" in header, "entries": entries, "for": loop}
    return out


def role_of(resource: dict) -> str:
    match = re.search(r"roles \. (\w+)", resource["entries"]["properties"])
    assert match, resource
    return match.group(1)


def test_the_app_identity_has_blob_data_contributor_not_owner():
    rbac = resources(RBAC)
    app = {n: r for n, r in rbac.items() if r["type"] == "Microsoft.Authorization/roleAssignments"
           and "identityPrincipalId" in r["entries"]["properties"]}
    blob_roles = {role_of(r) for r in app.values() if role_of(r).startswith("storageBlob")}
    assert blob_roles == {"storageBlobDataContributor"}
    assert "storageBlobDataOwner" not in RBAC.read_text(encoding="utf-8")


def test_ml_identities_read_only_the_containers_they_need():
    """Storage Blob Data Reader (the Azure ML identities) is assigned on container resources, never the account;
    the collected scoring inputs are readable only by the drift job's principals."""
    rbac = resources(RBAC)
    containers = {n: r for n, r in rbac.items() if r["type"] == CONTAINER_TYPE}
    assert all(r["existing"] for r in containers.values())
    readers = {n: r for n, r in rbac.items() if r["type"] == "Microsoft.Authorization/roleAssignments"
               and role_of(r) == "storageBlobDataReader"}
    assert readers
    for name, reader in readers.items():
        scope = reader["entries"]["scope"]
        assert scope in containers, f"{name}: scope {scope} is not a container"
    names = {n: containers[r["entries"]["scope"]]["entries"]["name"] for n, r in readers.items()}
    params = Bicep(RBAC).params()
    assert {"datasetsContainerName", "inferenceContainerName", "reportsContainerName"} <= set(params)
    inference_readers = {rbac[n]["for"] for n, c in names.items() if c == "inferenceContainerName"}
    assert inference_readers == {"driftReaderPrincipalIds"}
    assert {rbac[n]["for"] for n, c in names.items() if c == "datasetsContainerName"} == {"datasetReaderPrincipalIds"}
    # main.bicep: the right containers, and drift readers only when the drift job is on
    main = Bicep(MAIN_BICEP)
    passed = main.module_params("rbac")
    assert main.resolve(passed["datasetsContainerName"]) == Settings().datasets_container
    assert main.resolve(passed["inferenceContainerName"]) == Settings().inference_container
    assert main.resolve(passed["reportsContainerName"]) == Settings().reports_container
    (drift,) = list_items(passed["driftReaderPrincipalIds"])
    assert "driftCompute" in {t.text for t in drift}
    assert "blobReaderPrincipalIds" not in passed


WORKSPACE = INFRA / "ml" / "workspace.bicep"


def test_the_app_reads_the_collector_datastore_with_a_read_only_role_on_the_workspace_storage():
    """INFERENCE_DATASTORE names the datastore Azure ML's data collector writes to (workspaceblobstore, on the
    workspace's storage account); a workspace created here gives the app identity Storage Blob Data Reader on that
    account and nothing more, and the drift cluster the same only when the drift job is on."""
    values = resolved_infra_settings()
    assert values["INFERENCE_DATASTORE"] == "workspaceblobstore"
    assert values["INFERENCE_ACCOUNT_URL"] == ""  # the datastore decides the account
    workspace = resources(WORKSPACE)
    assignments = {n: r for n, r in workspace.items() if r["type"] == "Microsoft.Authorization/roleAssignments"}
    assert {n: role_of(r) for n, r in assignments.items()} == {
        "collectedDataReader": "storageBlobDataReader", "driftCollectedDataReader": "storageBlobDataReader"}
    assert all(r["entries"]["scope"] == "storage" for r in assignments.values())
    assert workspace["storage"]["type"] == "Microsoft.Storage/storageAccounts"
    reader = assignments["collectedDataReader"]["entries"]["properties"]
    assert "principalId : collectedDataReaderPrincipalId" in reader
    assert "principalId : cluster . identity . principalId" in assignments["driftCollectedDataReader"]["entries"][
        "properties"]
    header = WORKSPACE.read_text(encoding="utf-8").split("resource driftCollectedDataReader", 1)[1].split("{", 1)[0]
    assert "if (driftOnCluster)" in header
    roles = Bicep(WORKSPACE).var_object("roles")
    assert {k: ROLES[_literal(v[0])] for k, v in roles.items()} == {"storageBlobDataReader": "Storage Blob Data Reader"}
    passed = Bicep(MAIN_BICEP).module_params("mlWorkspace")
    principal = [t.text for t in passed["collectedDataReaderPrincipalId"]]
    assert principal == ["identity", ".", "outputs", ".", "principalId"]
    assert "driftCompute" in {t.text for t in passed["driftOnCluster"]}


def test_key_vault_has_purge_protection():
    vault = resources(INFRA / "core" / "keyvault.bicep")["vault"]["entries"]["properties"]
    assert re.search(r"enablePurgeProtection : true", vault)
    assert re.search(r"enableRbacAuthorization : true", vault)


def test_application_insights_refuses_key_based_ingestion():
    monitoring = Bicep(INFRA / "core" / "monitoring.bicep")
    component = resources(INFRA / "core" / "monitoring.bicep")["applicationInsights"]["entries"]["properties"]
    assert "DisableLocalAuth : disableLocalAuth" in component
    assert [t.text for t in monitoring.params()["disableLocalAuth"]] == ["true"]
    main = Bicep(MAIN_BICEP)
    assert [t.text for t in main.module_params("monitoring")["disableLocalAuth"]] == ["appInsightsDisableLocalAuth"]
    assert [t.text for t in main.params()["appInsightsDisableLocalAuth"]] == ["true"]
    # Entra ID ingestion needs the identity's Monitoring Metrics Publisher role and the host's auth string
    assert "monitoringMetricsPublisher" in RBAC.read_text(encoding="utf-8")
    assert main.resolve(infra_app_settings()["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]) is None  # has the id
    assert "Authorization=AAD" in " ".join(t.text for t in infra_app_settings()[
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"])


@pytest.mark.parametrize(("path", "resource"), [("core/storage.bicep", "storage"), ("core/keyvault.bicep", "vault"),
                                                 ("app/function.bicep", "functionApp")])
def test_public_network_access_is_explicit_and_explained(path, resource):
    """What stays reachable from the internet is a decision written next to it, with the reason and a source."""
    text = (INFRA / path).read_text(encoding="utf-8")
    props = resources(INFRA / path)[resource]["entries"]["properties"]
    assert "publicNetworkAccess :" in props
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("publicNetworkAccess:"))
    comment = []
    for line in reversed(lines[:at]):
        if not line.strip().startswith("//"):
            break
        comment.append(line)
    assert comment and any("https://learn.microsoft.com/" in line for line in comment), path


def test_function_app_is_flex_consumption_python_311_with_the_user_assigned_identity():
    function = (INFRA / "app" / "function.bicep").read_text(encoding="utf-8")
    assert "tier: 'FlexConsumption'" in function and "name: 'FC1'" in function
    assert "name: 'python'" in function and "keyVaultReferenceIdentity: identityId" in function
    assert "type: 'UserAssignedIdentity'" in function
    main = Bicep(MAIN_BICEP)
    params = main.module_params("functionApp")
    assert main.resolve(params["runtimeVersion"]) == "3.11"
    webhook = infra_app_settings()["WEBHOOK_SECRET"]
    assert [t.text for t in webhook] == ["webhookSecretReference"]
    assert "@Microsoft.KeyVault(VaultName=" in MAIN_BICEP.read_text(encoding="utf-8")


def test_parameters_file_matches_main_bicep():
    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    declared = Bicep(MAIN_BICEP).params()
    assert set(parameters) <= set(declared), sorted(set(parameters) - set(declared))
    required = {name for name, default in declared.items() if default is None}
    assert required <= set(parameters), sorted(required - set(parameters))
    assert parameters["webhookSecret"]["value"] == "$(secretOrRandomPassword ${AZURE_KEY_VAULT_NAME} webhook-secret)"
    assert "AZURE_KEY_VAULT_NAME" in Bicep(MAIN_BICEP).declarations("output")
    # the environment variables a user may set are documented (the azd options table of the Azure page)
    section = (ROOT / "docs" / "azure.md").read_text(encoding="utf-8")
    inputs = {m for p in parameters.values() for m in re.findall(r"\$\{([A-Z0-9_]+)", str(p["value"]))}
    undocumented = sorted(v for v in inputs - AZD_PROVIDED - {"AZURE_KEY_VAULT_NAME"} if v not in section)
    assert not undocumented, undocumented


def test_azure_yaml_deploys_the_python_app_at_the_root_with_infra():
    spec = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert spec["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    ((name, service),) = spec["services"].items()
    assert service == {"project": ".", "language": "python", "host": "function"}
    project = ROOT / service["project"]
    for needed in ("main.py", "host.json", "requirements.txt", "function_app", "shared"):
        assert (project / needed).exists(), needed
    assert re.search(rf"var serviceName = '{name}'", MAIN_BICEP.read_text(encoding="utf-8"))
    assert "'azd-service-name': serviceName" in MAIN_BICEP.read_text(encoding="utf-8")
    hook = spec["hooks"]["postdeploy"]
    assert hook["run"] == "./infra/scripts/postdeploy.sh" and (ROOT / hook["run"]).resolve() == POSTDEPLOY


def test_package_ignore_keeps_the_app_and_drops_the_rest():
    """azd zips the project folder minus .funcignore: the repository root has a 1.4 GB .venv."""
    path = ROOT / ".funcignore"
    patterns = {line.strip().strip("/") for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".venv", "node_modules", ".local", "tests", "local", "infra", "local.settings.json"} <= patterns
    kept = {"main.py", "host.json", "requirements.txt", "requirements-train.txt", "function_app", "shared"}
    assert not kept & patterns
    assert not any(p.startswith("*") and name.endswith(p[1:]) for p in patterns for name in kept)


def test_the_host_body_cap_is_what_the_routes_need():
    """Infra, the sample and the local stack cap request bodies at http_guard.HOST_BODY_LIMIT (1 MB + 64 KB: an Event
    Grid delivery fits, the API routes refuse above 1 MB themselves), not the platform's 100 MB default."""
    from shared.services.http_guard import HOST_BODY_LIMIT, MAX_BODY

    assert MAX_BODY < HOST_BODY_LIMIT <= MAX_BODY + 64 * 1024
    assert resolved_infra_settings()["FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"] == str(HOST_BODY_LIMIT)
    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))["Values"]
    assert sample["FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"] == str(HOST_BODY_LIMIT)
