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

@description('Principals that read dataset versions through the Azure ML datastore (the workspace\'s and the compute cluster\'s identities); empty entries are skipped.')
param blobReaderPrincipalIds array = []

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
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

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// The app's identity: the host's storage (blob trigger, timers' locks, deployment package) and the service's own
// containers and tables.
resource identityBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
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

// Azure ML reads the dataset versions it trains on through an identity-based datastore.
resource blobReaders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (principalId, i) in blobReaderPrincipalIds: if (!empty(principalId)) {
    name: guid(storage.id, empty(principalId) ? 'unused-${i}' : principalId, roles.storageBlobDataReader)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]
