// Log Analytics + workspace-based Application Insights (the Functions host's logs and the app's OpenTelemetry).
param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object = {}

@description('Refuse instrumentation-key ingestion (Entra ID only). Off: shared/telemetry.py exports with the connection string and no credential, which Entra-only ingestion would reject.')
param disableLocalAuth bool = false

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
