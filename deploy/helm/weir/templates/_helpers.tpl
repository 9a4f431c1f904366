{{/*
Names and labels. Every object is "<release>-weir-<component>" unless the release name
already says weir; selectors use name, instance and component only (labels that never
change on upgrade: a selector is immutable in a Deployment and a StatefulSet).
*/}}
{{- define "weir.fullname" -}}
{{- if contains "weir" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-weir" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: weir
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "weir.labels" -}}
{{ include "weir.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "weir.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "weir.tokensSecret" -}}
{{ .Values.tokens.existingSecret | default (printf "%s-tokens" (include "weir.fullname" .)) }}
{{- end -}}

{{/* The pipe URL: brokers, TLS on/off and the SASL mechanism and user (the password never goes in a URL). */}}
{{- define "weir.pipeUrl" -}}
{{- $k := .Values.kafka -}}
{{- $query := list -}}
{{- if and $k.tls (not $k.tlsSecret.name) }}{{ $query = append $query "tls=true" }}{{ end -}}
{{- if $k.sasl.mechanism }}{{ $query = append $query (printf "sasl=%s&user=%s" $k.sasl.mechanism $k.sasl.user) }}{{ end -}}
kafka://{{ join "," $k.brokers }}{{ if $query }}?{{ join "&" $query }}{{ end }}
{{- end -}}

{{/* weir.config.json: the shared keys from the values, then the `config` value over them. */}}
{{- define "weir.config" -}}
{{- $shared := dict "pipe" (include "weir.pipeUrl" .) "bus" .Values.nats.url "cluster" .Values.cluster -}}
{{- mergeOverwrite $shared (deepCopy .Values.config) | toPrettyJson -}}
{{- end -}}

{{/* Whether workers need a --pipe-config file (Kafka options, or TLS files). */}}
{{- define "weir.kafkaConfigNeeded" -}}
{{- if or .Values.kafka.options .Values.kafka.tlsSecret.name }}true{{ end -}}
{{- end -}}

{{- define "weir.kafkaConfig" -}}
{{- $k := .Values.kafka -}}
{{- $c := deepCopy $k.options -}}
{{- if $k.tlsSecret.name -}}
{{- $ssl := dict "caFile" "/etc/weir/secrets/kafka/ca.crt" -}}
{{- if $k.tlsSecret.cert }}{{ $_ := set $ssl "certFile" "/etc/weir/secrets/kafka/tls.crt" }}{{ end -}}
{{- if $k.tlsSecret.key }}{{ $_ := set $ssl "keyFile" "/etc/weir/secrets/kafka/tls.key" }}{{ end -}}
{{- $_ := set $c "ssl" $ssl -}}
{{- end -}}
{{- $c | toPrettyJson -}}
{{- end -}}

{{/* The --nats-* options: each credential a file under /etc/weir/secrets/nats. */}}
{{- define "weir.natsArgs" -}}
{{- $n := .Values.nats -}}
{{- if $n.tokenSecret.name }}
- --nats-token-file=/etc/weir/secrets/nats/token
{{- end }}
{{- if $n.user }}
- --nats-user={{ $n.user }}
{{- end }}
{{- if $n.passwordSecret.name }}
- --nats-password-file=/etc/weir/secrets/nats/password
{{- end }}
{{- if $n.credsSecret.name }}
- --nats-creds=/etc/weir/secrets/nats/nats.creds
{{- end }}
{{- if $n.nkeySecret.name }}
- --nats-nkey=/etc/weir/secrets/nats/nkey.seed
{{- end }}
{{- if $n.tlsSecret.name }}
- --nats-ca=/etc/weir/secrets/nats/ca.crt
{{- if $n.tlsSecret.cert }}
- --nats-cert=/etc/weir/secrets/nats/tls.crt
{{- end }}
{{- if $n.tlsSecret.key }}
- --nats-key=/etc/weir/secrets/nats/tls.key
{{- end }}
{{- end }}
{{- end -}}

{{/* One item of a projected Secret source. */}}
{{- define "weir.secretSource" -}}
- secret:
    name: {{ .name }}
    items:
      {{- range .items }}
      - key: {{ index . 0 }}
        path: {{ index . 1 }}
      {{- end }}
{{- end -}}

{{/*
The files of the Secrets a component needs, as the sources of one projected volume at
/etc/weir/secrets. Argument: dict "root" $ "kafka" bool "tokens" list (keys of the tokens
Secret: metrics, monitor, views), and "noNats" true for a pod that never talks to NATS (the
savepoint restore Job). Empty when the component needs no secret.
*/}}
{{- define "weir.secretSources" -}}
{{- $v := .root.Values -}}
{{- $n := $v.nats -}}
{{- if not .noNats }}
{{- if $n.tokenSecret.name }}
{{ include "weir.secretSource" (dict "name" $n.tokenSecret.name "items" (list (list $n.tokenSecret.key "nats/token"))) }}
{{- end }}
{{- if $n.passwordSecret.name }}
{{ include "weir.secretSource" (dict "name" $n.passwordSecret.name "items" (list (list $n.passwordSecret.key "nats/password"))) }}
{{- end }}
{{- if $n.credsSecret.name }}
{{ include "weir.secretSource" (dict "name" $n.credsSecret.name "items" (list (list $n.credsSecret.key "nats/nats.creds"))) }}
{{- end }}
{{- if $n.nkeySecret.name }}
{{ include "weir.secretSource" (dict "name" $n.nkeySecret.name "items" (list (list $n.nkeySecret.key "nats/nkey.seed"))) }}
{{- end }}
{{- if $n.tlsSecret.name }}
{{- $items := list (list $n.tlsSecret.ca "nats/ca.crt") }}
{{- if $n.tlsSecret.cert }}{{ $items = append $items (list $n.tlsSecret.cert "nats/tls.crt") }}{{ end }}
{{- if $n.tlsSecret.key }}{{ $items = append $items (list $n.tlsSecret.key "nats/tls.key") }}{{ end }}
{{ include "weir.secretSource" (dict "name" $n.tlsSecret.name "items" $items) }}
{{- end }}
{{- end }}
{{- $k := $v.kafka }}
{{- if and .kafka $k.tlsSecret.name }}
{{- $items := list (list $k.tlsSecret.ca "kafka/ca.crt") }}
{{- if $k.tlsSecret.cert }}{{ $items = append $items (list $k.tlsSecret.cert "kafka/tls.crt") }}{{ end }}
{{- if $k.tlsSecret.key }}{{ $items = append $items (list $k.tlsSecret.key "kafka/tls.key") }}{{ end }}
{{ include "weir.secretSource" (dict "name" $k.tlsSecret.name "items" $items) }}
{{- end }}
{{- if .tokens }}
{{- $items := list }}
{{- range .tokens }}{{ $items = append $items (list (index $v.tokens (printf "%sKey" .)) (printf "tokens/%s" .)) }}{{ end }}
{{ include "weir.secretSource" (dict "name" (include "weir.tokensSecret" .root) "items" $items) }}
{{- end }}
{{- end -}}

{{/*
Volumes every weir pod has: the config file, the secrets (if any), a writable /tmp. Argument:
as weir.secretSources, and "configMap", the ConfigMap holding weir.config.json when it is not
the release's (the restore hook's own copy).
*/}}
{{- define "weir.commonVolumes" -}}
{{- $sources := include "weir.secretSources" . | trim -}}
- name: config
  configMap:
    name: {{ .configMap | default (printf "%s-config" (include "weir.fullname" .root)) }}
{{- if $sources }}
- name: secrets
  projected:
    defaultMode: 288 # 0440: the owner and the fsGroup read, no one writes
    sources:
      {{- $sources | nindent 6 }}
{{- end }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "weir.commonVolumeMounts" -}}
- name: config
  mountPath: /etc/weir/weir.config.json
  subPath: weir.config.json
  readOnly: true
{{- if include "weir.secretSources" . | trim }}
- name: secrets
  mountPath: /etc/weir/secrets
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Restarts pods when the configuration changes (a subPath mount is not updated in place). */}}
{{- define "weir.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end -}}
