{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "kafka-smq-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already contains the chart name. */}}
{{- define "kafka-smq-operator.fullname" -}}
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

{{- define "kafka-smq-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kafka-smq-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kafka-smq-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kafka-smq-operator.labels" -}}
helm.sh/chart: {{ include "kafka-smq-operator.chart" . }}
{{ include "kafka-smq-operator.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: kafka-smq
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kafka-smq-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kafka-smq-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kafka-smq-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* --default-gateway-image value: the gateway image by digest, else by tag (default appVersion). */}}
{{- define "kafka-smq-operator.gatewayImage" -}}
{{- if .Values.gatewayImage.digest }}
{{- printf "%s@%s" .Values.gatewayImage.repository .Values.gatewayImage.digest }}
{{- else }}
{{- printf "%s:%s" .Values.gatewayImage.repository (default .Chart.AppVersion .Values.gatewayImage.tag) }}
{{- end }}
{{- end }}

{{/* --http value: host:port, with IPv6 hosts in brackets. */}}
{{- define "kafka-smq-operator.httpAddr" -}}
{{- $a := .Values.http.address }}
{{- if contains ":" $a }}
{{- printf "[%s]:%d" $a (int .Values.http.port) }}
{{- else }}
{{- printf "%s:%d" $a (int .Values.http.port) }}
{{- end }}
{{- end }}

{{/*
The single watched namespace, or "" for all. Combinations the operator cannot run are refused
here as well as in values.schema.json (a schema can be skipped with --skip-schema-validation).
*/}}
{{- define "kafka-smq-operator.watchNamespace" -}}
{{- if gt (len .Values.watchNamespaces) 1 }}
{{- fail "watchNamespaces: the operator watches all namespaces or exactly one" }}
{{- end }}
{{- if .Values.watchNamespaces }}{{ first .Values.watchNamespaces }}{{ end }}
{{- end }}

{{- define "kafka-smq-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: two replicas without the Lease would reconcile at once" }}
{{- end }}
{{- end }}
