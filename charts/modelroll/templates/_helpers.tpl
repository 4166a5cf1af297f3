{{/* Names and labels shared by every template. */}}

{{- define "modelroll.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: "<release>-modelroll", or the release name alone if it already says modelroll. */}}
{{- define "modelroll.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelroll.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelroll.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* managed-by is Helm here: the value "modelroll" marks the objects the operator itself owns. */}}
{{- define "modelroll.labels" -}}
{{ include "modelroll.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: modelroll
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "modelroll.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelroll.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "modelroll.leaseName" -}}
{{- default (include "modelroll.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{- define "modelroll.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* "true" when a monitoring object should be rendered: enabled is true, or "auto" and the API is served. */}}
{{- define "modelroll.monitoringOn" -}}
{{- $enabled := index . 0 -}}
{{- $ctx := index . 1 -}}
{{- if or (eq (toString $enabled) "true") (and (eq (toString $enabled) "auto") ($ctx.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) -}}
true
{{- end -}}
{{- end -}}
