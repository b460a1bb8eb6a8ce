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
set -eu

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

# 1. Uploads -> blob trigger. The subject filter keeps the app's own writes to other containers out.
blob_webhook="${RETRAIN_BASE_URL}/runtime/webhooks/blobs?functionName=Host.Functions.blob_upload&code=${blobs_key}"
az eventgrid system-topic event-subscription create \
  --name incoming-blob-created \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --system-topic-name "$STORAGE_EVENTS_TOPIC_NAME" \
  --endpoint-type webhook \
  --endpoint "$blob_webhook" \
  --included-event-types Microsoft.Storage.BlobCreated \
  --subject-begins-with "/blobServices/default/containers/${INCOMING_CONTAINER}/blobs/" \
  --max-delivery-attempts 30 \
  --event-ttl 1440 \
  --output none
echo "postdeploy: uploads to '${INCOMING_CONTAINER}' now trigger blob_upload"

# 2. Azure ML run events -> run_completed. `event-subscription create` on the workspace uses the workspace's
# system topic, creating it if there is none (there can be only one per workspace).
run_webhook="${RETRAIN_BASE_URL}/runtime/webhooks/eventgrid?functionName=run_completed&code=${eventgrid_key}"
az eventgrid event-subscription create \
  --name retrain-run-completed \
  --source-resource-id "$AZUREML_WORKSPACE_ID" \
  --endpoint-type webhook \
  --endpoint "$run_webhook" \
  --included-event-types Microsoft.MachineLearningServices.RunCompleted \
  --max-delivery-attempts 30 \
  --event-ttl 1440 \
  --output none
az eventgrid event-subscription create \
  --name retrain-run-failed \
  --source-resource-id "$AZUREML_WORKSPACE_ID" \
  --endpoint-type webhook \
  --endpoint "$run_webhook" \
  --included-event-types Microsoft.MachineLearningServices.RunStatusChanged \
  --advanced-filter data.runStatus StringIn Failed Canceled \
  --max-delivery-attempts 30 \
  --event-ttl 1440 \
  --output none
echo "postdeploy: Azure ML run events of the workspace now reach run_completed"
