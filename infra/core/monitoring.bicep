// Log Analytics + workspace-based Application Insights (the Functions host's logs and the app's OpenTelemetry).
param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object = {}

// Entra ID-only ingestion: the connection string (its instrumentation key is not a secret) is not enough to write
// telemetry; senders need a token with Monitoring Metrics Publisher on this component.
// https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication#disable-local-authentication
@description('Refuse instrumentation-key ingestion (Entra ID only). The app sends with its identity (shared/bootstrap.py passes the credential; the host uses APPLICATIONINSIGHTS_AUTHENTICATION_STRING).')
param disableLocalAuth bool = true

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    retentionInDays: 30
    sku: {
      name: 'PerGB2018'
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: disableLocalAuth
  }
}

output id string = applicationInsights.id
output name string = applicationInsights.name
output connectionString string = applicationInsights.properties.ConnectionString
output logAnalyticsId string = logAnalytics.id
