// A small Azure ML workspace when none is given: its own storage account and Key Vault, the app's Application
// Insights, no container registry (Azure ML creates one when it first builds an environment image), and one CPU
// cluster that scales to zero (the training pipeline, and the drift profiling job when DRIFT_COMPUTE names it).
param name string
param location string
param tags object = {}
param storageAccountName string
param keyVaultName string
param applicationInsightsId string
param computeName string
param computeVmSize string

@minValue(1)
param computeMaxNodes int = 2

@description('Principal id of the app\'s user-assigned identity: reads what the data collector writes to this workspace\'s blob store (INFERENCE_DATASTORE).')
param collectedDataReaderPrincipalId string

@description('true when the parallel drift job runs on this workspace\'s cluster (DRIFT_COMPUTE): its identity reads the collected data too.')
param driftOnCluster bool = false

var roles = {
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
  }
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Basic'
    tier: 'Basic'
  }
  kind: 'Default'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    friendlyName: name
    storageAccount: storage.id
    keyVault: vault.id
    applicationInsights: applicationInsightsId
    publicNetworkAccess: 'Enabled'
    v1LegacyMode: false
  }
}

resource cluster 'Microsoft.MachineLearningServices/workspaces/computes@2024-04-01' = {
  parent: workspace
  name: computeName
  location: location
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    computeType: 'AmlCompute'
    properties: {
      vmSize: computeVmSize
      vmPriority: 'Dedicated'
      osType: 'Linux'
      remoteLoginPortPublicAccess: 'Disabled'
      scaleSettings: {
        minNodeCount: 0
        maxNodeCount: computeMaxNodes
        nodeIdleTimeBeforeScaleDown: 'PT5M'
      }
    }
  }
}

// Azure ML's data collector writes `modelDataCollector/<endpoint>/<deployment>/...` to the default datastore
// `workspaceblobstore`, the container azureml-blobstore-<workspace id> of this account
// (https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data, "Store collected data in a
// blob storage"; https://learn.microsoft.com/azure/machine-learning/concept-data, "Default datastores"). The app
// reads it with its identity (shared/adapters/workspace_datastore.py), so it needs Storage Blob Data Reader there:
// read only, on this account, which holds nothing but the workspace's own data. The account, not that container:
// Azure ML creates the container and names it after the workspace id, so it is no resource of this template.
// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/storage#storage-blob-data-reader
resource collectedDataReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, collectedDataReaderPrincipalId, roles.storageBlobDataReader)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: collectedDataReaderPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The parallel drift job (DRIFT_COMPUTE) is given the collected window as a blob URL of that container and reads it
// with the cluster's identity.
resource driftCollectedDataReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (driftOnCluster) {
  name: guid(storage.id, cluster.id, roles.storageBlobDataReader)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: cluster.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

output id string = workspace.id
output name string = workspace.name
output computeName string = cluster.name
output computePrincipalId string = cluster.identity.principalId
