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

{{/* A Kubernetes object name (DNS label) from any text: lower case,
dots to dashes, and at most 63 characters (a hash keeps long ones apart). */}}
{{- define "authgate.objectName" -}}
{{- $name := . | lower | replace "." "-" | replace "*" "wildcard" }}
{{- if gt (len $name) 63 }}
{{- printf "%s-%s" ($name | trunc 52 | trimSuffix "-") ($name | sha256sum | trunc 10) }}
{{- else }}
{{- $name }}
{{- end }}
{{- end }}

{{/* The Secret with cookie_secret and idp_client_secret. */}}
{{- define "authgate.secretName" -}}
{{- .Values.config.existingSecret | default (include "authgate.fullname" .) }}
{{- end }}

{{/* The cookie domain: config.rootDomain, lower case. */}}
{{- define "authgate.cookieDomain" -}}
{{- .Values.config.rootDomain | lower | trimPrefix "." | trimSuffix "." }}
{{- end }}

{{/* The login host, lower case: the host of authenticate.redirectUrl (the
redirect URI registered at the provider), else ingress.authenticate.name,
else <authenticate.name or "authenticate">.<config.rootDomain>, as
Pomerium's chart has it. */}}
{{- define "authgate.authHost" -}}
{{- $redirect := .Values.authenticate.redirectUrl }}
{{- $ingressName := .Values.ingress.authenticate.name | lower }}
{{- if $redirect }}
{{- $u := urlParse $redirect }}
{{- $host := $u.host | lower }}
{{- if and $ingressName (ne $ingressName $host) }}
{{- fail (printf "authenticate.redirectUrl names the login host %s, ingress.authenticate.name %s: they are one host; keep one of them" $host $ingressName) }}
{{- end }}
{{- $host }}
{{- else if $ingressName }}
{{- $ingressName }}
{{- else }}
{{- printf "%s.%s" (.Values.authenticate.name | default "authenticate" | lower) (include "authgate.cookieDomain" .) }}
{{- end }}
{{- end }}

{{/* The login host's base URL (authenticate_service_url). */}}
{{- define "authgate.authURL" -}}
{{- $scheme := "https" }}
{{- with .Values.authenticate.redirectUrl }}
{{- $scheme = (urlParse .).scheme }}
{{- end }}
{{- printf "%s://%s" $scheme (include "authgate.authHost" .) }}
{{- end }}

{{/* authgate's Service as ingress-nginx reaches it. */}}
{{- define "authgate.serviceURL" -}}
{{- printf "http://%s.%s.svc.cluster.local:%d" (include "authgate.fullname" .) .Release.Namespace (int .Values.service.httpPort) }}
{{- end }}

{{/* The IngressClass: the `kubernetes.io/ingress.class` annotation of
Pomerium-era values, else ingress.className, else nginx. (The API server
refuses an Ingress with both the annotation and ingressClassName.) */}}
{{- define "authgate.ingressClass" -}}
{{- $annotation := index (.Values.ingress.annotations | default dict) "kubernetes.io/ingress.class" | default "" }}
{{- if and $annotation .Values.ingress.className (ne $annotation .Values.ingress.className) }}
{{- fail (printf "ingress.annotations.kubernetes.io/ingress.class is %s but ingress.className is %s: keep one" $annotation .Values.ingress.className) }}
{{- end }}
{{- $annotation | default .Values.ingress.className | default "nginx" }}
{{- end }}

{{/* ingress.annotations without the class annotation (it became
ingressClassName), as JSON. */}}
{{- define "authgate.userAnnotations" -}}
{{- omit (.Values.ingress.annotations | default dict) "kubernetes.io/ingress.class" | toJson }}
{{- end }}

{{/* The TLS Secret of the Ingresses: ingress.secret.name, else
ingress.secretName, else the one the chart makes from ingress.secret.cert
and .key; empty: ingress-nginx's default certificate. */}}
{{- define "authgate.tlsSecretName" -}}
{{- $s := .Values.ingress.secret }}
{{- if $s.name }}
{{- $s.name }}
{{- else if .Values.ingress.secretName }}
{{- .Values.ingress.secretName }}
{{- else if and $s.cert $s.key }}
{{- printf "%s-tls" (include "authgate.fullname" .) }}
{{- end }}
{{- end }}

{{/* The `tls:` of an Ingress for host `.host` (TLS Secret `.secret`
overriding the chart's): every host, as Pomerium's chart did, unless
ingress.tls.hosts lists some and not this one. */}}
{{- define "authgate.tls" -}}
{{- $root := .root }}
{{- $only := list }}
{{- range $root.Values.ingress.tls.hosts }}
{{- $only = append $only (lower .) }}
{{- end }}
{{- if or (not $only) (has .host $only) }}
{{- $secret := .secret | default (include "authgate.tlsSecretName" $root) }}
tls:
  - hosts: [{{ .host | quote }}]
    {{- with $secret }}
    secretName: {{ . }}
    {{- end }}
{{- end }}
{{- end }}

{{/* The routes, from config.policy or config.routes (Pomerium's older and
newer names; an old chart took config.policy as base64 of the YAML list):
{"key": "policy"|"routes", "routes": [...]} as JSON. */}}
{{- define "authgate.routes" -}}
{{- $policy := .Values.config.policy }}
{{- if kindIs "string" $policy }}
{{- $policy = $policy | b64dec | fromYamlArray }}
{{- end }}
{{- if and $policy .Values.config.routes }}
{{- fail "config.policy and config.routes are the same list (Pomerium's older and newer name): keep one" }}
{{- end }}
{{- if .Values.config.routes }}
{{- dict "key" "routes" "routes" .Values.config.routes | toJson }}
{{- else }}
{{- dict "key" "policy" "routes" ($policy | default list) | toJson }}
{{- end }}
{{- end }}

{{/* A route's `from` as authgate reads it: scheme://host, host lower case.
Fails on what authgate would refuse, naming the route. */}}
{{- define "authgate.from" -}}
{{- $u := urlParse .from }}
{{- if or (not (has $u.scheme (list "http" "https"))) (not $u.host) (not (has $u.path (list "" "/"))) $u.query }}
{{- fail (printf "%s: from %q must be http(s)://host, only (paths are matched with prefix, path or regex)" .at .from) }}
{{- end }}
{{- printf "%s://%s" $u.scheme (lower $u.host) }}
{{- end }}

{{/* What the routes' `to` and ingress.protect render, as JSON:
{"sites": [{name, host, https, paths: [{path, pathType, service, port}],
tlsSecret}], "externals": [{name, externalName, port}]}. A `to` naming a
Service in another namespace (<svc>.<ns>.svc…) or a host outside the
cluster becomes an ExternalName Service in the release's namespace, so the
Ingress (which can only name Services beside it) reaches it. */}}
{{- define "authgate.sites" -}}
{{- $root := . }}
{{- $fullname := include "authgate.fullname" . }}
{{- $only := list }}
{{- range .Values.ingress.hosts }}
{{- $only = append $only (lower .) }}
{{- end }}
{{- $sites := list }}
{{- $byHost := dict }}
{{- $externals := dict }}
{{- $r := include "authgate.routes" . | fromJson }}
{{- range $i, $route := $r.routes }}
{{- if $route.to }}
{{- $at := printf "config.%s[%d]" $r.key $i }}
{{- if not (kindIs "string" $route.to) }}
{{- fail (printf "%s.to: one URL (several, for load balancing, are not supported: put them behind one Service)" $at) }}
{{- end }}
{{- $from := urlParse (include "authgate.from" (dict "from" $route.from "at" $at)) }}
{{- $host := $from.host }}
{{- if contains ":" $host }}
{{- fail (printf "%s.from: an Ingress host has no port (%s); drop the port or write the Ingress yourself" $at $route.from) }}
{{- end }}
{{- if hasPrefix "*." $host }}
{{- fail (printf "%s: a wildcard from (%s) with `to`: the chart binds each Ingress to one host (auth-url ?host=); give each host its own route, or drop `to` and write the Ingress yourself" $at $route.from) }}
{{- end }}
{{- if or (not $only) (has $host $only) }}
{{- $to := urlParse $route.to }}
{{- if or (not (has $to.scheme (list "http" "https"))) (not $to.hostname) (not (has $to.path (list "" "/"))) $to.query }}
{{- fail (printf "%s.to: %q must be http(s)://host[:port] (no path)" $at $route.to) }}
{{- end }}
{{- $toHost := lower $to.hostname }}
{{- $port := trimPrefix ":" (trimPrefix $to.hostname $to.host) }}
{{- if not $port }}
{{- $port = ternary "443" "80" (eq $to.scheme "https") }}
{{- end }}
{{- $labels := splitList "." $toHost }}
{{- $service := "" }}
{{- if eq (len $labels) 1 }}
{{- $service = $toHost }}
{{- else if and (ge (len $labels) 3) (eq (index $labels 2) "svc") (eq (index $labels 1) $root.Release.Namespace) }}
{{- $service = index $labels 0 }}
{{- else }}
{{- if and (ge (len $labels) 3) (eq (index $labels 2) "svc") }}
{{- $service = include "authgate.objectName" (printf "%s-%s-%s" $fullname (index $labels 0) (index $labels 1)) }}
{{- else }}
{{- $service = include "authgate.objectName" (printf "%s-%s" $fullname $toHost) }}
{{- end }}
{{- $_ := set $externals (printf "%s/%s" $service $port) (dict "name" $service "externalName" $toHost "port" (int $port)) }}
{{- end }}
{{- $path := dict "path" "/" "pathType" "Prefix" }}
{{- if $route.regex }}
{{- fail (printf "%s: regex with `to` has no Ingress path; drop `to` and write the Ingress yourself (NOTES lists its annotations)" $at) }}
{{- else if $route.prefix }}
{{- $path = dict "path" $route.prefix "pathType" "Prefix" }}
{{- else if $route.path }}
{{- $path = dict "path" $route.path "pathType" "Exact" }}
{{- end }}
{{- $_ := set $path "service" $service }}
{{- $_ := set $path "port" (int $port) }}
{{- $https := eq $to.scheme "https" }}
{{- $site := get $byHost $host }}
{{- if not $site }}
{{- $site = dict "name" (include "authgate.objectName" (printf "%s-%s" $fullname $host)) "host" $host "https" $https "paths" list }}
{{- $_ := set $byHost $host $site }}
{{- $sites = append $sites $site }}
{{- else if ne $site.https $https }}
{{- fail (printf "%s.to: %s mixes http and https upstreams on one host; ingress-nginx sets the backend protocol per Ingress" $at $host) }}
{{- end }}
{{- $taken := false }}
{{- range $site.paths }}
{{- if and (eq .path $path.path) (eq .pathType $path.pathType) }}
{{- $taken = true }}
{{- end }}
{{- end }}
{{- if not $taken }}
{{- $_ := set $site "paths" (append $site.paths $path) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- range $only }}
{{- if not (hasKey $byHost .) }}
{{- fail (printf "ingress.hosts lists %s, but no route with `to` has it as its from host: add one, or remove the host" .) }}
{{- end }}
{{- end }}
{{- range .Values.ingress.protect }}
{{- $host := lower .host }}
{{- $path := dict "path" (.path | default "/") "pathType" "Prefix" "service" .service.name "port" (int .service.port) }}
{{- $sites = append $sites (dict "name" (include "authgate.objectName" (printf "%s-%s" $fullname .name)) "host" $host "https" false "paths" (list $path) "tlsSecret" (.tlsSecretName | default "")) }}
{{- end }}
{{- $external := list }}
{{- range keys $externals | sortAlpha }}
{{- $external = append $external (get $externals .) }}
{{- end }}
{{- dict "sites" $sites "externals" $external | toJson }}
{{- end }}

{{/* Refuse settings that cannot work, with a message saying what to set. */}}
{{- define "authgate.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (or .Values.redis.url .Values.redis.existingSecret)) }}
{{- fail "replicaCount > 1 needs a shared session store: set redis.url (or redis.existingSecret); the embedded store is one file per pod, so replicas would not see each other's sessions" }}
{{- end }}
{{- if and (not .Values.config.existingSecret) (not .Values.authenticate.idp.clientSecret) }}
{{- fail "set authenticate.idp.clientSecret, or config.existingSecret with keys cookie_secret and idp_client_secret" }}
{{- end }}
{{- with .Values.authenticate.redirectUrl }}
{{- $u := urlParse . }}
{{- if or (not (has $u.scheme (list "http" "https"))) (not $u.host) (ne $u.path "/oauth2/callback") $u.query }}
{{- fail (printf "authenticate.redirectUrl %q: authgate's callback is https://<login host>/oauth2/callback; write it so (and register it so at the provider)" .) }}
{{- end }}
{{- end }}
{{- if ne (not .Values.ingress.secret.cert) (not .Values.ingress.secret.key) }}
{{- fail "ingress.secret: give both cert and key (base64 of the PEM files), or neither" }}
{{- end }}
{{- range $name, $message := dict "COOKIE_SECRET" "config.cookieSecret (or config.existingSecret)" "IDP_CLIENT_SECRET" "authenticate.idp.clientSecret (or config.existingSecret)" "SIGNING_KEY" "config.existingSecret with a signing_key file and config.extraOpts.signing_key_file" "PREVIOUS_COOKIE_SECRETS" "config.existingSecret with a file and config.extraOpts.previous_cookie_secrets_file" "SHARED_SECRET" "nothing: authgate has no shared secret between services" "SESSION_STORE" "redis.url (or redis.existingSecret)" }}
{{- if hasKey $.Values.extraEnv $name }}
{{- fail (printf "extraEnv.%s: a secret in the Deployment's environment is readable by anyone who may read the Deployment; use %s" $name $message) }}
{{- end }}
{{- end }}
{{- if hasKey .Values.extraEnv "POLICY" }}
{{- fail "extraEnv.POLICY: authgate reads routes from its file only: put them in config.policy (or config.routes)" }}
{{- end }}
{{- end }}

{{/* Whether a value is true as Pomerium reads booleans (Go's ParseBool). */}}
{{- define "authgate.truthy" -}}
{{- if has (lower (toString .)) (list "true" "t" "1" "yes" "on") }}true{{ end }}
{{- end }}

{{/* The container's environment: extraEnv as written, except that
Pomerium's POMERIUM_DEBUG becomes debug logs (LOG_LEVEL=debug,
LOG_FORMAT=pretty, replacing extraEnv's own LOG_LEVEL/LOG_FORMAT). */}}
{{- define "authgate.env" -}}
{{- $debug := include "authgate.truthy" (get .Values.extraEnv "POMERIUM_DEBUG") }}
{{- range $name, $value := .Values.extraEnv }}
{{- if not (or (eq $name "POMERIUM_DEBUG") (and $debug (has $name (list "LOG_LEVEL" "LOG_FORMAT")))) }}
- name: {{ $name }}
  value: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- if $debug }}
- name: LOG_LEVEL
  value: debug
- name: LOG_FORMAT
  value: pretty
{{- end }}
{{- end }}

{{/* The scopes as a list: authenticate.idp.scopes as a list, or as one
string separated by spaces or commas (Pomerium's chart took a string). */}}
{{- define "authgate.scopes" -}}
{{- $scopes := .Values.authenticate.idp.scopes }}
{{- if kindIs "string" $scopes }}
{{- $scopes = splitList " " (replace "," " " $scopes) | compact }}
{{- end }}
{{- toJson $scopes }}
{{- end }}

{{/* One Ingress: .name, .host, .annotations (a dict), .paths ([{path,
pathType, service, port or portName}]), .tlsSecret (optional override). */}}
{{- define "authgate.ingress" }}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ .name }}
  labels:
    {{- include "authgate.labels" .root | nindent 4 }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  ingressClassName: {{ include "authgate.ingressClass" .root }}
  {{- with include "authgate.tls" (dict "root" .root "host" .host "secret" .tlsSecret) | trim }}
  {{- . | nindent 2 }}
  {{- end }}
  rules:
    - host: {{ .host | quote }}
      http:
        paths:
          {{- range .paths }}
          - path: {{ .path }}
            pathType: {{ .pathType }}
            backend:
              service:
                name: {{ .service }}
                port:
                  {{- if .portName }}
                  name: {{ .portName }}
                  {{- else }}
                  number: {{ .port }}
                  {{- end }}
          {{- end }}
{{- end }}
