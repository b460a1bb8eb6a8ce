"""The documented sample run events of "Azure Machine Learning as an Event Grid source" (Event Grid event schema tab:
https://learn.microsoft.com/azure/event-grid/event-schema-machine-learning), shared by the parity tests."""

from __future__ import annotations

import copy

WORKSPACE = "/subscriptions/{subscription-id}/resourceGroups/{resource-group-name}/providers/" \
            "Microsoft.MachineLearningServices/workspaces/{workspace-name}"
_RUN_PROPERTIES = {"runTemplate": "automl_child", "pipeline_id": "5adc0a4fe02504a586f09a4fcbb241f9a4012062",
                   "training_percent": "100", "iteration": "5", "run_algorithm": "LassoLars",
                   "model_name": "AutoMLad912b2d65"}
# The documented samples (Event Grid event schema tab), trimmed of runProperties entries nothing reads.
RUN_COMPLETED = {
    "topic": WORKSPACE,
    "subject": "experiments/0fa9dfaa-cba3-4fa7-b590-23e48548f5c1/runs/AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5",
    "eventType": "Microsoft.MachineLearningServices.RunCompleted",
    "eventTime": "2017-06-26T18:41:00.9584103Z",
    "id": "831e1650-001e-001b-66ab-eeb76e069631",
    "data": {"experimentId": "0fa9dfaa-cba3-4fa7-b590-23e48548f5c1", "experimentName": "automl-local-regression",
             "runId": "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5", "runType": None, "runTags": {},
             "runProperties": _RUN_PROPERTIES},
    "dataVersion": "",
    "metadataVersion": "1",
}
RUN_STATUS_CHANGED = copy.deepcopy(RUN_COMPLETED) | {"eventType": "Microsoft.MachineLearningServices.RunStatusChanged"}
RUN_STATUS_CHANGED["data"]["runStatus"] = "failed"  # lowercase, as documented
