{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "restore-r1.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix: <release>-restore-r1, or the release name when it already contains it. */}}
{{- define "restore-r1.fullname" -}}
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

{{/* The metrics Service name; Prometheus sets job=<this> on every scraped series. */}}
{{- define "restore-r1.metricsName" -}}
{{- printf "%s-metrics" (include "restore-r1.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "restore-r1.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "restore-r1.selectorLabels" -}}
app.kubernetes.io/name: {{ include "restore-r1.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "restore-r1.labels" -}}
helm.sh/chart: {{ include "restore-r1.chart" . }}
{{ include "restore-r1.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: triton
{{- end }}

{{- define "restore-r1.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "restore-r1.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "restore-r1.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The --model-repository argument. */}}
{{- define "restore-r1.modelRepository" -}}
{{- if eq .Values.modelRepository.source "s3" }}
{{- .Values.modelRepository.s3.uri }}
{{- else if eq .Values.modelRepository.source "pvc" }}
{{- .Values.modelRepository.pvc.mountPath }}
{{- else }}
{{- fail (printf "modelRepository.source must be s3 or pvc, got %q" .Values.modelRepository.source) }}
{{- end }}
{{- end }}
