#!/bin/sh
# azd postdeploy hook: subscribe the deployed Function App to Event Grid.
#
#   1. Blob created in the incoming container  -> the `blob_upload` blob trigger (source EventGrid), through the
#      blobs extension webhook with the `blobs_extension` system key.
#   2. Azure ML run events on the workspace    -> the `run_completed` Event Grid trigger, through the Event Grid
#      extension webhook with the `eventgrid_extension` system key: every RunCompleted, and RunStatusChanged only
#      for runs that ended Failed or Canceled (a status change that ends nothing is not worth an invocation).
#
# The system keys exist only once the host has started with the deployed code, so this runs after `azd deploy`
# (the Functions quickstarts do the same), not in Bicep. Idempotent: re-running updates the subscriptions.
# Run by hand: `sh infra/scripts/postdeploy.sh` (reads the values with `azd env get-values`). Needs az and curl.
#
# No key on a command line: argv is visible to every local user (`ps`, /proc/<pid>/cmdline) and may land in shell
# history or CI logs. The keys are read from az's standard output into shell variables, and each subscription is
# created with the Event Grid REST API (`az rest --method put --body @file`, az loads `@file` arguments from the
# file) from a request body written by the shell's printf builtin into a 0700 folder as a 0600 file, deleted on
# exit. https://learn.microsoft.com/rest/api/eventgrid/controlplane/event-subscriptions/create-or-update
# (The blob trigger's Event Grid source must be a webhook with the blobs_extension key:
# https://learn.microsoft.com/azure/azure-functions/functions-event-grid-blob-trigger#create-the-event-subscription
# For the Event Grid trigger, Event Grid also has an `AzureFunction` destination (a function's resource id, no key
# in the subscription): https://learn.microsoft.com/azure/event-grid/handler-functions . Both run events keep the
# webhook here, like the local stack, and the key never reaches a command line either way.)
set -eu
umask 077

for cmd in az curl; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "postdeploy: '$cmd' is required (see the README's prerequisites)" >&2; exit 1; }
done

# azd hands its environment to hooks; by hand, read it.
if [ -z "${AZURE_FUNCTION_APP_NAME:-}" ]; then
  command -v azd >/dev/null 2>&1 || { echo "postdeploy: run inside azd, or install azd" >&2; exit 1; }
  azd_values=$(azd env get-values)
  while IFS='=' read -r key value; do
    case "$key" in
      ''|\#*) continue ;;
    esac
    value=$(printf '%s' "$value" | sed -e 's/^"//' -e 's/"$//')
    export "$key=$value"
  done <<EOF
$azd_values
EOF
fi

: "${AZURE_FUNCTION_APP_NAME:?postdeploy: AZURE_FUNCTION_APP_NAME is not set (run azd provision first)}"
: "${AZURE_RESOURCE_GROUP:?}"
: "${RETRAIN_BASE_URL:?}"
: "${STORAGE_EVENTS_TOPIC_NAME:?}"
: "${INCOMING_CONTAINER:?}"
: "${AZUREML_WORKSPACE_ID:?}"
: "${AZURE_SUBSCRIPTION_ID:?}"

eventgrid_api="2022-06-15"
arm="https://management.azure.com"
workdir=$(mktemp -d)
chmod 700 "$workdir"
trap 'rm -rf "$workdir"' EXIT
trap 'exit 1' INT TERM

# A host system key by name; empty until the host has loaded that extension.
system_key() {
  az functionapp keys list --name "$AZURE_FUNCTION_APP_NAME" --resource-group "$AZURE_RESOURCE_GROUP" \
    --query "systemKeys.$1" --output tsv 2>/dev/null || true
}

echo "postdeploy: waiting for the Functions host to create its extension keys..."
attempt=0
while :; do
  # Any request starts the host (Flex Consumption scales to zero); /api/health is anonymous.
  curl --silent --output /dev/null --max-time 30 "${RETRAIN_BASE_URL}/api/health" || true
  blobs_key=$(system_key blobs_extension)
  eventgrid_key=$(system_key eventgrid_extension)
  if [ -n "$blobs_key" ] && [ -n "$eventgrid_key" ]; then
    break
  fi
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 30 ]; then
    echo "postdeploy: no blobs_extension/eventgrid_extension system key after 5 minutes; check the app's logs" \
      "(Application Insights, or 'az webapp log tail'), then run: sh infra/scripts/postdeploy.sh" >&2
    exit 1
  fi
  sleep 10
done

# An event subscription from a JSON body: $1 its ARM id, $2 the body. The body holds the webhook URL with its key:
# written by printf (a shell builtin, not a process with arguments) to a 0600 file, handed to az as @file.
put_subscription() {
  body="$workdir/body.json"
  rm -f "$body"
  printf '%s' "$2" > "$body"
  chmod 600 "$body"
  az rest --method put --url "${arm}$1?api-version=${eventgrid_api}" --body "@$body" \
    --headers "Content-Type=application/json" --output none
  rm -f "$body"
}

# Delivery: 30 attempts within a day, the Event Grid schema the triggers read.
retry='"retryPolicy":{"maxDeliveryAttempts":30,"eventTimeToLiveInMinutes":1440},"eventDeliverySchema":"EventGridSchema"'

# 1. Uploads -> blob trigger. The subject filter keeps the app's own writes to other containers out.
blob_webhook="${RETRAIN_BASE_URL}/runtime/webhooks/blobs?functionName=Host.Functions.blob_upload&code=${blobs_key}"
topic_id="/subscriptions/${AZURE_SUBSCRIPTION_ID}/resourceGroups/${AZURE_RESOURCE_GROUP}/providers/Microsoft.EventGrid/systemTopics/${STORAGE_EVENTS_TOPIC_NAME}"
put_subscription "${topic_id}/eventSubscriptions/incoming-blob-created" \
  "{\"properties\":{\"destination\":{\"endpointType\":\"WebHook\",\"properties\":{\"endpointUrl\":\"${blob_webhook}\"}},\"filter\":{\"includedEventTypes\":[\"Microsoft.Storage.BlobCreated\"],\"subjectBeginsWith\":\"/blobServices/default/containers/${INCOMING_CONTAINER}/blobs/\"},${retry}}}"
echo "postdeploy: uploads to '${INCOMING_CONTAINER}' now trigger blob_upload"

# 2. Azure ML run events -> run_completed. An event subscription on the workspace (an extension resource of it) uses
# the workspace's system topic, which Event Grid creates if there is none (there can be only one per workspace).
run_webhook="${RETRAIN_BASE_URL}/runtime/webhooks/eventgrid?functionName=run_completed&code=${eventgrid_key}"
put_subscription "${AZUREML_WORKSPACE_ID}/providers/Microsoft.EventGrid/eventSubscriptions/retrain-run-completed" \
  "{\"properties\":{\"destination\":{\"endpointType\":\"WebHook\",\"properties\":{\"endpointUrl\":\"${run_webhook}\"}},\"filter\":{\"includedEventTypes\":[\"Microsoft.MachineLearningServices.RunCompleted\"]},${retry}}}"
put_subscription "${AZUREML_WORKSPACE_ID}/providers/Microsoft.EventGrid/eventSubscriptions/retrain-run-failed" \
  "{\"properties\":{\"destination\":{\"endpointType\":\"WebHook\",\"properties\":{\"endpointUrl\":\"${run_webhook}\"}},\"filter\":{\"includedEventTypes\":[\"Microsoft.MachineLearningServices.RunStatusChanged\"],\"advancedFilters\":[{\"operatorType\":\"StringIn\",\"key\":\"data.runStatus\",\"values\":[\"Failed\",\"Canceled\"]}]},${retry}}}"
echo "postdeploy: Azure ML run events of the workspace now reach run_completed"
