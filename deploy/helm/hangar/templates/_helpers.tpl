{{/* The chart name (nameOverride wins). */}}
{{- define "hangar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the prefix of every object the chart creates. */}}
{{- define "hangar.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels (stable across upgrades). */}}
{{- define "hangar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hangar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels of every object. (managed-by is Helm: hangar's own children carry
     managed-by=hangar, and the controller watches those.) */}}
{{- define "hangar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "hangar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: hangar
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "hangar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hangar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hangar.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Lease of leader election. */}}
{{- define "hangar.leaseName" -}}
{{- include "hangar.fullname" . }}
{{- end }}

{{/* The rules of what the controller does inside a namespace it manages: the ClusterRole's
     (cluster-wide mode) or each watchNamespaces Role's. Secrets are not among them. */}}
{{- define "hangar.namespacedRules" -}}
# The resources hangar reconciles (the discovery controller creates and deletes MCPServers).
- apiGroups: [mcp-hangar.io]
  resources: [mcpservers, mcpservergroups, mcpdiscoverysources]
  verbs: [get, list, watch, create, patch, update, delete]
# Their status.
- apiGroups: [mcp-hangar.io]
  resources: [mcpservers/status, mcpservergroups/status, mcpdiscoverysources/status]
  verbs: [get, patch, update]
# Owner references with blockOwnerDeletion on the children (checked where the
# OwnerReferencesPermissionEnforcement admission plugin is on).
- apiGroups: [mcp-hangar.io]
  resources: [mcpservers/finalizers, mcpservergroups/finalizers]
  verbs: [update]
# The children a server or group renders: server-side applied (patch; create when new),
# watched (drift, deletion), listed and deleted when no longer rendered.
- apiGroups: [""]
  resources: [services, serviceaccounts]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# Why a server's pods are not ready (a pull error, a crash loop): listed, never changed.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Discovery: ConfigMap catalogs (read, and watched for changes).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
# Events on the resources.
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* The gateway's selector labels (component gateway: the operator's selector never matches
     its pods, nor its selector the operator's). */}}
{{- define "hangar.gatewaySelectorLabels" -}}
app.kubernetes.io/name: {{ include "hangar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "hangar.gatewayLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "hangar.gatewaySelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: hangar
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Whether the bundled gateway is installed: gateway.enabled, and no external one (hangar.url). */}}
{{- define "hangar.gatewayEnabled" -}}
{{- if and .Values.gateway.enabled (not .Values.hangar.url) }}true{{ end }}
{{- end }}

{{/* The gateway's Service: `RELEASE-core` for the release `mcp-hangar`, so the seed's
     `hangar.url=http://mcp-hangar-core:8080` names it. */}}
{{- define "hangar.gatewayName" -}}
{{- printf "%s-core" (include "hangar.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The gateway's URL as agents in the cluster reach it (each server's status.gatewayEndpoint
     is its route there): hangar.url, else the bundled gateway's Service; empty without either. */}}
{{- define "hangar.gatewayURL" -}}
{{- if .Values.hangar.url }}{{ .Values.hangar.url }}
{{- else if .Values.gateway.enabled }}{{ printf "http://%s.%s.svc:%v" (include "hangar.gatewayName" .) .Release.Namespace .Values.gateway.service.port }}
{{- end }}
{{- end }}

{{/* The Secret holding the session-token key, and its key. */}}
{{- define "hangar.sessionSecretName" -}}
{{- default (printf "%s-session-key" (include "hangar.gatewayName" .)) .Values.hangar.existingSecret }}
{{- end }}
{{- define "hangar.sessionSecretKey" -}}
{{- default "session-key" .Values.hangar.secretKey }}
{{- end }}

{{- define "hangar.gatewayRules" -}}
- apiGroups: [mcp-hangar.io]
  resources: [mcpservers, mcpservergroups]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
# the activator: on-demand servers' Deployments are watched, their last activity recorded
# (patch), and they are scaled 0 <-> 1 through the scale subresource
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, patch]
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [get, patch, update]
{{- end }}
