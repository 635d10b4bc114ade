{{- define "authgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "authgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "authgate.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "authgate.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "authgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "authgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "authgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The Secret with cookie_secret and idp_client_secret. */}}
{{- define "authgate.secretName" -}}
{{- .Values.config.existingSecret | default (include "authgate.fullname" .) }}
{{- end }}

{{/* The login host. */}}
{{- define "authgate.authHost" -}}
{{- .Values.config.authenticateServiceHost | default (printf "auth.%s" .Values.config.rootDomain) }}
{{- end }}

{{/* authgate's Service as ingress-nginx reaches it. */}}
{{- define "authgate.serviceURL" -}}
{{- printf "http://%s.%s.svc.cluster.local:%d" (include "authgate.fullname" .) .Release.Namespace (int .Values.service.httpPort) }}
{{- end }}

{{/* Refuse settings that cannot work, with a message saying what to set. */}}
{{- define "authgate.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (or .Values.redis.url .Values.redis.existingSecret)) }}
{{- fail "replicaCount > 1 needs a shared session store: set redis.url (or redis.existingSecret); the embedded store is one file per pod, so replicas would not see each other's sessions" }}
{{- end }}
{{- if and (not .Values.config.existingSecret) (not .Values.authenticate.idp.clientSecret) }}
{{- fail "set authenticate.idp.clientSecret, or config.existingSecret with keys cookie_secret and idp_client_secret" }}
{{- end }}
{{- end }}
