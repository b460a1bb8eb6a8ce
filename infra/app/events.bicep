// Event Grid system topic on the app's storage account. Its subscription (BlobCreated in the incoming container ->
// the blob trigger's webhook) needs the deployed app's blobs_extension system key, which exists only once the code
// runs, so infra/scripts/postdeploy.sh creates it after `azd deploy`, as the Functions quickstarts do.
param name string
param location string
param tags object = {}
param storageAccountName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = topic.name
