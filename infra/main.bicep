// `azd up` for the retrain service: a Flex Consumption Function App (Python 3.11) with a user-assigned identity,
// its storage account (containers, tables, Event Grid system topic), Application Insights + Log Analytics, a Key
// Vault for the webhook secret, and an Azure ML workspace (created here, or an existing one).
// The Event Grid subscriptions that need the deployed app's system keys are made by infra/scripts/postdeploy.sh.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; with the subscription and the location it seeds every resource name.')
param environmentName string

@minLength(1)
@description('Region of every resource created here (Flex Consumption must be offered there: `az functionapp list-flexconsumption-locations`).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of whoever runs azd: may upload datasets and read the webhook secret. Empty: no access.')
param principalId string = ''

@allowed(['User', 'ServicePrincipal'])
param principalType string = 'User'

// ---- Azure ML -------------------------------------------------------------------------------------------------

@description('true: create a small workspace (with a CPU cluster) in this resource group; false: use azureMlWorkspaceName in azureMlResourceGroupName.')
param createAzureMlWorkspace bool = true

@description('Workspace to create, or the existing one to use. Empty (create only): mlw-<token>.')
param azureMlWorkspaceName string = ''

@description('Resource group of the existing workspace (ignored when creating one). Empty: this environment\'s group.')
param azureMlResourceGroupName string = ''

@description('Compute cluster the training pipeline runs on (created with the workspace; must exist in an existing one).')
param azureMlComputeName string = 'cpu-cluster'

param azureMlComputeVmSize string = 'Standard_DS3_v2'

@minValue(1)
param azureMlComputeMaxNodes int = 2

@allowed(['published', 'batch-endpoint'])
@description('PIPELINE_KIND: `batch-endpoint` for the pipeline `retrain azure publish` deploys, `published` for a v1 published pipeline.')
param pipelineKind string = 'batch-endpoint'

@description('PIPELINE_ENDPOINT_URL. Empty: the invocation URL of the batch endpoint pipelineBatchEndpointName.')
param pipelineEndpointUrl string = ''

@description('Batch endpoint `retrain azure publish --endpoint-name` creates (names are unique per region). Empty: retrain-<token>.')
param pipelineBatchEndpointName string = ''

@description('PIPELINE_BATCH_DEPLOYMENT; empty: the endpoint\'s default deployment.')
param pipelineBatchDeployment string = ''

@description('AZUREML_ONLINE_ENDPOINT, the managed online endpoint models are deployed to (names are unique per region). Empty: score-<token>.')
param onlineEndpointName string = ''

@description('AZUREML_INSTANCE_TYPE of each online deployment.')
param onlineInstanceType string = 'Standard_DS3_v2'

@minValue(1)
@description('AZUREML_INSTANCE_COUNT of each online deployment.')
param onlineInstanceCount int = 1

@description('DRIFT_COMPUTE: compute cluster for the parallel drift profiling job; empty: every drift window is profiled inline.')
param driftCompute string = ''

// ---- The webhook ----------------------------------------------------------------------------------------------

@secure()
@description('WEBHOOK_SECRET, stored in Key Vault (main.parameters.json: azd generates it once, then reads it back).')
param webhookSecret string

@secure()
@description('WEBHOOK_SECRET_PREVIOUS while callers move to a new secret; empty: none.')
param webhookSecretPrevious string = ''

// ---- The Function App -----------------------------------------------------------------------------------------

@minValue(1)
@maxValue(1000)
param functionAppMaximumInstanceCount int = 40

@allowed([2048, 4096])
param functionAppInstanceMemoryMB int = 2048

@description('Refuse instrumentation-key ingestion in Application Insights (Entra ID only): the Functions host sends with APPLICATIONINSIGHTS_AUTHENTICATION_STRING and shared/telemetry/ with the app\'s identity, both as Monitoring Metrics Publisher.')
param appInsightsDisableLocalAuth bool = true

// ---- Names ----------------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var serviceName = 'retrain' // azure.yaml services.retrain: azd finds the app by its azd-service-name tag
var resourceGroupName = 'rg-${environmentName}'
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

// The settings' defaults (shared/settings.py): tests/unit/test_infra.py checks they agree.
var containerNames = {
  incoming: 'incoming'
  datasets: 'datasets'
  quarantine: 'quarantine'
  inference: 'inference-data'
  reports: 'drift-reports'
}
var tableNames = {
  audit: 'audit'
  runs: 'runs'
  datasets: 'datasets'
  models: 'models'
  webhook: 'webhook'
  outbox: 'outbox'
}

var mlWorkspaceName = !empty(azureMlWorkspaceName) ? azureMlWorkspaceName : 'mlw-${resourceToken}'
var mlResourceGroupName = createAzureMlWorkspace || empty(azureMlResourceGroupName) ? resourceGroupName : azureMlResourceGroupName
var mlDatastoreName = 'retrain_datasets'
var batchEndpointName = !empty(pipelineBatchEndpointName) ? pipelineBatchEndpointName : 'retrain-${resourceToken}'
var scoringEndpointName = !empty(onlineEndpointName) ? onlineEndpointName : 'score-${resourceToken}'

// ---- Resources ------------------------------------------------------------------------------------------------

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: resourceGroupName
  location: location
  tags: tags
}

module identity 'core/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'core/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    disableLocalAuth: appInsightsDisableLocalAuth
  }
}

module storage 'core/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    containers: [
      deploymentContainerName
      containerNames.incoming
      containerNames.datasets
      containerNames.quarantine
      containerNames.inference
      containerNames.reports
    ]
    tables: [
      tableNames.audit
      tableNames.runs
      tableNames.datasets
      tableNames.models
      tableNames.webhook
      tableNames.outbox
    ]
  }
}

module storageEvents 'app/events.bicep' = {
  name: 'storage-events'
  scope: rg
  params: {
    name: 'evgt-${resourceToken}-storage'
    location: location
    tags: tags
    storageAccountName: storage.outputs.name
  }
}

module keyVault 'core/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    webhookSecret: webhookSecret
    webhookSecretPrevious: webhookSecretPrevious
  }
}

module mlWorkspace 'ml/workspace.bicep' = if (createAzureMlWorkspace) {
  name: 'ml-workspace'
  scope: rg
  params: {
    name: mlWorkspaceName
    location: location
    tags: tags
    storageAccountName: 'stml${resourceToken}'
    keyVaultName: 'kvml-${resourceToken}'
    applicationInsightsId: monitoring.outputs.id
    computeName: azureMlComputeName
    computeVmSize: azureMlComputeVmSize
    computeMaxNodes: azureMlComputeMaxNodes
    collectedDataReaderPrincipalId: identity.outputs.principalId
    driftOnCluster: !empty(driftCompute)
  }
}

module mlAccess 'ml/access.bicep' = {
  name: 'ml-access'
  scope: resourceGroup(mlResourceGroupName)
  params: {
    workspaceName: mlWorkspaceName
    identityPrincipalId: identity.outputs.principalId
    datastoreName: mlDatastoreName
    storageAccountName: storage.outputs.name
    storageResourceGroupName: rg.name
    datasetsContainerName: containerNames.datasets
  }
  dependsOn: [
    rg
    mlWorkspace
  ]
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    appInsightsName: monitoring.outputs.name
    keyVaultName: keyVault.outputs.name
    identityPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    datasetsContainerName: containerNames.datasets
    inferenceContainerName: containerNames.inference
    reportsContainerName: containerNames.reports
    datasetReaderPrincipalIds: [
      mlAccess.outputs.principalId
      createAzureMlWorkspace ? mlWorkspace.outputs.computePrincipalId : ''
    ]
    // Only when the parallel drift job is on (DRIFT_COMPUTE); a cluster of an existing workspace needs the same
    // two container-scoped Storage Blob Data Reader assignments, granted by whoever owns it.
    driftReaderPrincipalIds: [
      createAzureMlWorkspace && !empty(driftCompute) ? mlWorkspace.outputs.computePrincipalId : ''
    ]
  }
}

var batchEndpointUrl = 'https://${batchEndpointName}.${mlAccess.outputs.location}.inference.ml.azure.com/jobs'
var pipelineUrl = !empty(pipelineEndpointUrl) ? pipelineEndpointUrl : batchEndpointUrl
var webhookSecretReference = '@Microsoft.KeyVault(VaultName=${keyVault.outputs.name};SecretName=${keyVault.outputs.webhookSecretName})'
// An unresolvable Key Vault reference would reach the app as its literal text: set the previous secret only when
// there is one.
var webhookSecretPreviousUri = '@Microsoft.KeyVault(VaultName=${keyVault.outputs.name};SecretName=${keyVault.outputs.webhookSecretPreviousName})'
var webhookSecretPreviousReference = empty(webhookSecretPrevious) ? '' : webhookSecretPreviousUri

// Every app setting the code reads (shared/settings.py, shared/bootstrap.py, shared/telemetry/,
// function_app/blob_upload.py); tests/unit/test_infra.py checks none is missing. Tuning values are the code's
// defaults, written out so they can be changed in one place.
var appSettings = {
  // Functions host and worker
  PYTHON_SCRIPT_FILE_NAME: 'main.py'
  // The host's cap on every request body (default 100 MB): 1 MB + 64 KB, so an Event Grid delivery (one event of up
  // to 1 MB in a JSON array) still fits while the API routes refuse above 1 MB themselves (shared/services/
  // http_guard.py HOST_BODY_LIMIT). https://learn.microsoft.com/azure/azure-functions/functions-app-settings#functions_request_body_size_limit
  FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: '1114112'
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  AzureWebJobsStorage__blobServiceUri: storage.outputs.primaryBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: storage.outputs.primaryQueueEndpoint
  AzureWebJobsStorage__tableServiceUri: storage.outputs.primaryTableEndpoint
  AZURE_CLIENT_ID: identity.outputs.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  OTEL_SERVICE_NAME: 'bankmarketing-retrain'
  // The service
  RETRAIN_MODE: 'azure'
  BLOB_TRIGGER_SOURCE: 'EventGrid'
  STORAGE_ACCOUNT_URL: storage.outputs.primaryBlobEndpoint
  INCOMING_CONTAINER: containerNames.incoming
  DATASETS_CONTAINER: containerNames.datasets
  QUARANTINE_CONTAINER: containerNames.quarantine
  INFERENCE_CONTAINER: containerNames.inference
  INFERENCE_ACCOUNT_URL: ''
  // Azure ML's data collector writes to the workspace's default blob datastore (docs/drift.md#current-window): the app
  // looks up its account and container in the workspace and reads them with its identity. A workspace created here
  // gives the identity Storage Blob Data Reader on its storage account (ml/workspace.bicep); for an existing one,
  // grant it by hand (docs/azure.md).
  INFERENCE_DATASTORE: 'workspaceblobstore'
  REPORTS_CONTAINER: containerNames.reports
  AUDIT_TABLE: tableNames.audit
  RUNS_TABLE: tableNames.runs
  DATASETS_TABLE: tableNames.datasets
  MODELS_TABLE: tableNames.models
  WEBHOOK_TABLE: tableNames.webhook
  OUTBOX_TABLE: tableNames.outbox
  // Created by the app on its first rollout (shared/adapters/rollout_queue.py); the identity's queue role is the trigger's.
  ROLLOUT_QUEUE: 'rollouts'
  DATASET_NAME: 'bankmarketing'
  MIN_ROWS: '500'
  MAX_UPLOAD_BYTES: '209715200'
  // The training pipeline
  PIPELINE_KIND: pipelineKind
  PIPELINE_ENDPOINT_URL: pipelineUrl
  PIPELINE_BATCH_DEPLOYMENT: pipelineBatchDeployment
  AZUREML_WORKSPACE_ID: mlAccess.outputs.id
  // the jobs API (job status, the lookup before a resubmission) on this cloud's Resource Manager
  AZUREML_ARM_URL: environment().resourceManager
  PIPELINE_EXPERIMENT_NAME: 'bankmarketing-retrain'
  PIPELINE_TOKEN_SCOPE: 'https://management.azure.com/.default'
  PIPELINE_DATASTORE: mlAccess.outputs.datastoreName
  PIPELINE_DATA_INPUT: 'training_data'
  PIPELINE_TIMEOUT_S: '30'
  PIPELINE_MAX_RETRIES: '4'
  TRAINING_BUDGET_S: '30'
  MAX_TIME_BUDGET_S: '1800'
  // Completion: champion/challenger, blue/green on the managed online endpoint
  AZURE_SUBSCRIPTION_ID: subscription().subscriptionId
  AZURE_RESOURCE_GROUP: mlResourceGroupName
  AZUREML_WORKSPACE_NAME: mlAccess.outputs.name
  AZUREML_ONLINE_ENDPOINT: scoringEndpointName
  AZUREML_MODEL_NAME: 'bankmarketing-classifier'
  AZUREML_INSTANCE_TYPE: onlineInstanceType
  AZUREML_INSTANCE_COUNT: string(onlineInstanceCount)
  AZUREML_MIRROR_PERCENT: '0'
  PROMOTION_MARGIN: '0.005'
  PROMOTION_FLOOR: '0.75'
  EVALUATION_PERCENT: '10'
  EVALUATION_ROWS: 'auto'
  RECONCILE_SCHEDULE: '0 */5 * * * *'
  RECONCILE_MIN_AGE_S: '120'
  RUN_TIMEOUT_S: '21600'
  // Drift
  DRIFT_SCHEDULE: '0 0 * * * *'
  DRIFT_THRESHOLD: '0.1'
  DRIFT_SHARE: '0.5'
  DRIFT_WINDOW_S: '604800'
  DRIFT_COOLDOWN_S: '21600'
  DRIFT_MIN_ROWS: '100'
  DRIFT_CRITICAL_COLUMNS: ''
  DRIFT_COLUMN_THRESHOLDS: ''
  DRIFT_INLINE_MAX_BYTES: '268435456'
  DRIFT_JOB_TIMEOUT_S: '10800'
  DRIFT_PARTITIONS: '0'
  DRIFT_COMPUTE: driftCompute
  // The webhook and the outbox
  WEBHOOK_SECRET: webhookSecretReference
  WEBHOOK_SECRET_PREVIOUS: webhookSecretPreviousReference
  WEBHOOK_RATE_LIMIT: '30'
  WEBHOOK_RATE_WINDOW_S: '60'
  REJECT_LIMIT: '10'
  DRIFT_HTTP_RATE_LIMIT: '6'
  DRIFT_HTTP_RATE_WINDOW_S: '3600'
  DRIFT_CHECK_LEASE_S: '900'
  IDEMPOTENCY_TTL_S: '86400'
  OUTBOX_SCHEDULE: '*/10 * * * * *'
  COALESCE_S: '10'
  SUBMIT_DEADLINE_S: '3600'
}

module functionApp 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: union(tags, { 'azd-service-name': serviceName })
    identityId: identity.outputs.id
    deploymentStorageUrl: '${storage.outputs.primaryBlobEndpoint}${deploymentContainerName}'
    runtimeVersion: '3.11'
    instanceMemoryMB: functionAppInstanceMemoryMB
    maximumInstanceCount: functionAppMaximumInstanceCount
    appSettings: appSettings
  }
  dependsOn: [
    rbac // the deployment container and the Key Vault references need the identity's roles
  ]
}

// ---- Outputs (azd stores them in .azure/<env>/.env; infra/scripts/postdeploy.sh and the README use them) -----

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_SUBSCRIPTION_ID string = subscription().subscriptionId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output RETRAIN_BASE_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output INCOMING_CONTAINER string = containerNames.incoming
output STORAGE_EVENTS_TOPIC_NAME string = storageEvents.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.name
output AZUREML_WORKSPACE_NAME string = mlAccess.outputs.name
output AZUREML_RESOURCE_GROUP string = mlResourceGroupName
output AZUREML_WORKSPACE_ID string = mlAccess.outputs.id
output AZUREML_COMPUTE_NAME string = azureMlComputeName
output AZUREML_ONLINE_ENDPOINT string = scoringEndpointName
output PIPELINE_BATCH_ENDPOINT_NAME string = batchEndpointName
output PIPELINE_INVOCATION_URL string = pipelineUrl
