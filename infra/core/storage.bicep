// The app's storage account: the Functions host (AzureWebJobsStorage), the deployment package, and the service's
// containers and tables. Keys are off: everything reaches it with the managed identity (or `az login`).
param name string
param location string
param tags object = {}

@description('Blob containers to create (the app creates missing ones too, but the blob trigger and Event Grid need the incoming one to exist).')
param containers array

@description('Tables to create.')
param tables array

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    dnsEndpointType: 'Standard'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    // Reachable over its public endpoint, with Entra ID only (allowSharedKeyAccess: false, no anonymous blobs):
    // a Flex Consumption app without VNet integration, its deployment (azd uploads the package to a container
    // here) and the Azure ML compute reach the account over the internet, and none of them is a "trusted Azure
    // service" the firewall's AzureServices bypass lets through. Closing it (defaultAction Deny) needs VNet
    // integration of the app plus private endpoints for blob/queue/table, not set up by this template.
    // https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#virtual-network-integration
    // https://learn.microsoft.com/azure/storage/common/storage-network-security#trusted-access-for-resources-registered-in-your-subscription
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in containers: {
    parent: blobService
    name: container
    properties: {
      publicAccess: 'None'
    }
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource storageTables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for table in tables: {
    parent: tableService
    name: table
  }
]

output id string = storage.id
output name string = storage.name
output primaryBlobEndpoint string = storage.properties.primaryEndpoints.blob
output primaryQueueEndpoint string = storage.properties.primaryEndpoints.queue
output primaryTableEndpoint string = storage.properties.primaryEndpoints.table
