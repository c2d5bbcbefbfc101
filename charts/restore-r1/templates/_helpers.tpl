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

{{/* repository@digest when a digest is given (immutable), else repository:tag. */}}
{{- define "restore-r1.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
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

{{/* Refuses to render a Prometheus Operator object (kind .kind, switched on by the value .value)
on a cluster that does not serve its CRD: `helm install` would fail later with "no matches for
kind". Offline, `helm template` sees only built-in API versions: pass
--api-versions monitoring.coreos.com/v1/<Kind>. */}}
{{- define "restore-r1.requireOperatorKind" -}}
{{- $api := printf "monitoring.coreos.com/v1/%s" .kind }}
{{- if not (.root.Capabilities.APIVersions.Has $api) }}
{{- fail (printf "%s=true needs the Prometheus Operator CRD %s, which this cluster does not serve: install kube-prometheus-stack (or its CRDs) or set %s=false (helm template: --api-versions %s)" .value $api .value $api) }}
{{- end }}
{{- end }}

{{/* Labels of the `helm test` pod: not the selector labels (the Services must not route to it). */}}
{{- define "restore-r1.testLabels" -}}
helm.sh/chart: {{ include "restore-r1.chart" . }}
app.kubernetes.io/name: {{ include "restore-r1.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: helm-test
{{- end }}
