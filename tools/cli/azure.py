"""`retrain azure publish` (the training pipeline in Azure ML) and `retrain azure doctor` (tools/azure_doctor)."""

from __future__ import annotations

import argparse
from dataclasses import replace

from tools.cli.command import CommandError, Exit, add_command


def _dry_run(publish, plan) -> int:
    """Build and validate the component, pipeline, endpoint and deployment offline; call nothing."""
    code = publish.stage_code()
    component = publish.build_component(code, publish.component_version(plan, code))
    pipeline = publish.build_pipeline_component(component, plan.compute)
    endpoint, deployment = publish.build_deployment(pipeline, plan)
    for name, entity in (("component", component), ("pipeline", pipeline), ("endpoint", endpoint),
                         ("deployment", deployment)):
        result = entity._validate() if hasattr(entity, "_validate") else None
        verdict = "valid" if result is None or result.passed else f"INVALID: {result.error_messages}"
        print(f"{name}: {type(entity).__name__} {verdict}")
    print(f"component inputs: {', '.join(component.inputs)}")
    print(f"command: {component.command}")
    return Exit.OK


def cmd_publish(args: argparse.Namespace) -> int:
    from shared.bootstrap import workspace_client
    from shared.jobs import publish
    from tools.cli.context import settings

    plan = publish.PublishPlan(endpoint_name=args.endpoint_name, deployment_name=args.deployment_name,
                               compute=args.compute, version=args.version)
    if args.dry_run:
        return _dry_run(publish, plan)
    configured = settings()  # AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE_NAME unless flagged
    workspace = replace(configured, azure_subscription_id=args.subscription or configured.azure_subscription_id,
                        azure_resource_group=args.resource_group or configured.azure_resource_group,
                        azureml_workspace_name=args.workspace or configured.azureml_workspace_name)
    missing = [flag for flag, value in (("--subscription", workspace.azure_subscription_id),
                                        ("--resource-group", workspace.azure_resource_group),
                                        ("--workspace", workspace.azureml_workspace_name)) if not value]
    if missing:
        raise CommandError(f"set {', '.join(missing)} (or AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, "
                           "AZUREML_WORKSPACE_NAME)", Exit.USAGE)
    publish.publish(workspace_client(workspace), plan)  # the app's MLClient: DefaultAzureCredential
    return Exit.OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from tools import azure_doctor

    return azure_doctor.main(json_output=args.json, settings_file=args.settings, timeout_s=args.timeout_s)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    azure = sub.add_parser("azure", help="Azure ML: publish the training pipeline")
    azure_sub = azure.add_subparsers(dest="azure_command", required=True)
    publish = add_command(azure_sub, "publish", cmd_publish,
                          help="define the training pipeline (azure-ai-ml v2) and publish it behind a batch "
                               "endpoint; prints the invocation URL")
    publish.add_argument("--subscription", help="default: AZURE_SUBSCRIPTION_ID")
    publish.add_argument("--resource-group", help="default: AZURE_RESOURCE_GROUP")
    publish.add_argument("--workspace", help="default: AZUREML_WORKSPACE_NAME")
    publish.add_argument("--compute", default="cpu-cluster", help="compute cluster for the pipeline")
    publish.add_argument("--endpoint-name", default="bankmarketing-retrain")
    publish.add_argument("--deployment-name", default="train")
    publish.add_argument("--version", help="version of the training and pipeline components (default: a hash of the "
                                          "code and environment, so a re-publish of changed code deploys it)")
    publish.add_argument("--dry-run", action="store_true", help="build and validate offline; call nothing")
    doctor = add_command(
        azure_sub, "doctor", cmd_doctor,
        help="before deploying: are the workspace, pipeline and scoring endpoints and storage reachable with the "
             "current credential, with the roles the app needs? (exit 0 all ok, 1 a check failed, 2 some could not "
             "be made, e.g. offline)")
    doctor.add_argument("--json", action="store_true", help='print {"ok": bool, "checks": [{"name", "status", '
                                                            '"message", "hint"}]}')
    doctor.add_argument("--settings", metavar="FILE",
                        help='a local.settings.json-style file; its "Values" win over the environment')
    doctor.add_argument("--timeout-s", type=float, default=5.0, help="per call and per token (default 5)")
