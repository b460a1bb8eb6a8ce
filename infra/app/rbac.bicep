// Least-privilege role assignments in the app's resource group.
param storageAccountName string
param appInsightsName string
param keyVaultName string

@description('Principal id of the app\'s user-assigned identity.')
param identityPrincipalId string

@description('The developer running azd (upload data, read the webhook secret); empty: none.')
param userPrincipalId string = ''

@allowed(['User', 'ServicePrincipal'])
param userPrincipalType string = 'User'

@description('Principals that read dataset versions through the Azure ML datastore (the workspace\'s and the compute cluster\'s identities): Storage Blob Data Reader on the datasets container only; empty entries are skipped.')
param datasetReaderPrincipalIds array = []

@description('Principals that run the parallel drift job (the compute cluster\'s identity when DRIFT_COMPUTE is set): Storage Blob Data Reader on the collected scoring inputs and the drift reports containers only; empty entries are skipped.')
param driftReaderPrincipalIds array = []

@description('The container of dataset versions (DATASETS_CONTAINER).')
param datasetsContainerName string

@description('The container of collected scoring inputs (INFERENCE_CONTAINER): readable by the app and the drift job only.')
param inferenceContainerName string

@description('The container of drift reports and staged drift job inputs (REPORTS_CONTAINER).')
param reportsContainerName string

var roles = {
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource datasetsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: datasetsContainerName
}

resource inferenceContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: inferenceContainerName
}

resource reportsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: reportsContainerName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// The app's identity: the host's storage (blob trigger, timers' locks, key store, deployment package) and the
// service's own containers and tables. Storage Blob Data Contributor, not Owner: it reads, writes and deletes blobs
// and creates containers (Microsoft.Storage/storageAccounts/blobServices/containers/write), all the host and the
// service do; Owner adds only POSIX ACL and ownership management for Data Lake Storage Gen2 (modifyPermissions,
// manageOwnership, runAsSuperUser), and this account has no hierarchical namespace.
// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/storage#storage-blob-data-contributor
// The Functions docs list Owner for AzureWebJobsStorage ("read and write access to blobs and the ability to create
// containers") and Owner + Queue Data Contributor + Storage Account Contributor for a polling blob trigger; this
// app's blob trigger uses the Event Grid source (no polling, no blob receipts scan), and Contributor grants the
// blob reads/writes and container creation that sentence names.
// https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
// https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-blob-trigger#grant-permission-to-the-identity
resource identityBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, roles.storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource identityQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource identityTable 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The Functions host sends its telemetry with Entra ID (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
resource identityMetrics 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, identityPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Key Vault references (WEBHOOK_SECRET, WEBHOOK_SECRET_PREVIOUS).
resource identitySecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identityPrincipalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The developer: upload datasets with `az storage blob upload --auth-mode login`, read and rotate the webhook
// secret (azd's secretOrRandomPassword reads it back on every provision).
resource userBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(storage.id, userPrincipalId, roles.storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(vault.id, userPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// Azure ML reads the dataset versions it trains on through an identity-based datastore: read access to that one
// container (a role assignment scoped to the container resource), not to the account, so the workspace and the
// compute never read the collected scoring inputs, the quarantine, the host's keys or the deployment package.
// https://learn.microsoft.com/azure/storage/blobs/assign-azure-role-data-access#assign-an-azure-role (scopes)
resource datasetReaders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (principalId, i) in datasetReaderPrincipalIds: if (!empty(principalId)) {
    name: guid(datasetsContainer.id, empty(principalId) ? 'unused-${i}' : principalId, roles.storageBlobDataReader)
    scope: datasetsContainer
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// The parallel drift job (DRIFT_COMPUTE) reads the window of collected scoring inputs and the reference profile
// and manifest the app stages in the reports container; nobody else in Azure ML reads those containers.
resource driftInferenceReaders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (principalId, i) in driftReaderPrincipalIds: if (!empty(principalId)) {
    name: guid(inferenceContainer.id, empty(principalId) ? 'unused-${i}' : principalId, roles.storageBlobDataReader)
    scope: inferenceContainer
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource driftReportReaders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (principalId, i) in driftReaderPrincipalIds: if (!empty(principalId)) {
    name: guid(reportsContainer.id, empty(principalId) ? 'unused-${i}' : principalId, roles.storageBlobDataReader)
    scope: reportsContainer
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]
