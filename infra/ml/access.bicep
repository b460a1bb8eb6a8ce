// Deployed into the workspace's resource group (new or existing): the app identity's role on the workspace and
// the datastore the pipeline reads dataset versions through.
param workspaceName string

@description('Principal id of the app\'s user-assigned identity.')
param identityPrincipalId string

@description('Name of the identity-based blob datastore over the app\'s datasets container (PIPELINE_DATASTORE).')
param datastoreName string

param storageAccountName string
param storageResourceGroupName string
param datasetsContainerName string

// Submit pipeline jobs / invoke the batch endpoint, read job outputs, register models, create and update the
// managed online endpoint's deployments. Not: create compute, change the workspace.
var azureMlDataScientist = 'f6c7c914-8db3-469d-8ca1-694a8f32e121'

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

resource dataScientist 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, identityPrincipalId, azureMlDataScientist)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', azureMlDataScientist)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Identity-based (no key or SAS stored in the workspace): jobs read with the submitting identity or the
// compute's, the studio with the workspace's; main.bicep gives those Storage Blob Data Reader on the account.
resource datastore 'Microsoft.MachineLearningServices/workspaces/datastores@2024-04-01' = {
  parent: workspace
  name: datastoreName
  properties: {
    datastoreType: 'AzureBlob'
    description: 'Dataset versions written by the retrain service (DATASETS_CONTAINER)'
    accountName: storageAccountName
    containerName: datasetsContainerName
    endpoint: environment().suffixes.storage
    protocol: 'https'
    subscriptionId: subscription().subscriptionId
    resourceGroup: storageResourceGroupName
    credentials: {
      credentialsType: 'None'
    }
    serviceDataAccessAuthIdentity: 'WorkspaceSystemAssignedIdentity'
  }
}

output id string = workspace.id
output name string = workspace.name
output location string = workspace.location
output principalId string = workspace.identity.?principalId ?? ''
output datastoreName string = datastore.name
