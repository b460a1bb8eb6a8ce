// The app's user-assigned managed identity: storage, Key Vault references, Application Insights and Azure ML
// all see this one principal (AZURE_CLIENT_ID tells DefaultAzureCredential which identity to use).
param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
