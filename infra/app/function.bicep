// The Function App on the Flex Consumption plan (Linux, Python), deployed from a blob container with the
// user-assigned identity; app settings come whole from main.bicep.
param name string
param planName string
param location string
param tags object = {}

@description('Resource id of the user-assigned identity (deployment storage, Key Vault references, everything else).')
param identityId string

@description('Blob container URL the deployment package is uploaded to (https://<account>.blob.core.windows.net/<container>).')
param deploymentStorageUrl string

param runtimeVersion string = '3.11'

@allowed([2048, 4096])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('App settings (name -> value).')
param appSettings object

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true // Linux
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Open: callers of /api/retrain and /api/drift-check (function key + HMAC signature) and Event Grid's webhook
    // deliveries (system keys) come from the internet; Event Grid cannot deliver to an app behind a private
    // endpoint. https://learn.microsoft.com/azure/event-grid/consume-private-endpoints
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentStorageUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: runtimeVersion
      }
    }
  }
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: appSettings
}

output id string = functionApp.id
output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
