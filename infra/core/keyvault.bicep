// Key Vault (RBAC authorization) holding the webhook's HMAC secret(s); the app reads them through Key Vault
// references in its app settings, resolved with the user-assigned identity.
param name string
param location string
param tags object = {}

@secure()
@description('HMAC-SHA256 key of X-Retrain-Signature (secret `webhook-secret`).')
param webhookSecret string

@secure()
@description('The previous key while callers move to a new one (secret `webhook-secret-previous`); empty: none.')
param webhookSecretPrevious string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
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
    // A deleted vault or secret cannot be purged before the retention ends, by anyone (irreversible once on):
    // the webhook secret survives a mistaken or malicious delete. `azd down --purge` cannot purge this vault; its
    // name stays reserved for softDeleteRetentionInDays.
    // https://learn.microsoft.com/azure/key-vault/general/soft-delete-overview#purge-protection
    enablePurgeProtection: true
    // Public: App Service resolves Key Vault references over the public endpoint unless the app is VNet-integrated
    // (it is not a trusted service for the vault firewall), and azd reads the secret back from the developer's
    // machine. Access is RBAC only (Key Vault Secrets User for the app, Secrets Officer for the developer).
    // https://learn.microsoft.com/azure/app-service/app-service-key-vault-references#access-network-restricted-vaults
    publicNetworkAccess: 'Enabled'
  }
}

resource currentSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'webhook-secret'
  properties: {
    value: webhookSecret
    contentType: 'HMAC-SHA256 key of X-Retrain-Signature'
  }
}

resource previousSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(webhookSecretPrevious)) {
  parent: vault
  name: 'webhook-secret-previous'
  properties: {
    value: webhookSecretPrevious
    contentType: 'previous HMAC-SHA256 key of X-Retrain-Signature (rotation)'
  }
}

output id string = vault.id
output name string = vault.name
output webhookSecretName string = currentSecret.name
output webhookSecretPreviousName string = 'webhook-secret-previous'
