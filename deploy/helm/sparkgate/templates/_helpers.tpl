{{/*
Names, labels and images shared by the chart's objects. Helpers that name a component take
(list $ "gateway"): the root context and the component.
*/}}

{{- define "sparkgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sparkgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's object name; also a DNS label (Services), hence the 63 characters. */}}
{{- define "sparkgate.component" -}}
{{- $ := index . 0 -}}
{{- printf "%s-%s" (include "sparkgate.fullname" $) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sparkgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "sparkgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sparkgate
{{- end -}}

{{- define "sparkgate.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "sparkgate.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "sparkgate.componentLabels" -}}
{{ include "sparkgate.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/*
Driver Pods are the gateway's, not the chart's: it labels them so (sparkgate.kube). The
NetworkPolicy and the PodDisruptionBudget for drivers select them by these labels.
*/}}
{{- define "sparkgate.driverSelectorLabels" -}}
app.kubernetes.io/managed-by: sparkgate
app.kubernetes.io/component: driver
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sparkgate.image" -}}
{{- $i := .Values.image -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $i.repository $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $i.repository (default .Chart.AppVersion $i.tag) -}}
{{- end -}}
{{- end -}}

{{- define "sparkgate.driverImage" -}}
{{- $i := .Values.driver.image -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $i.repository $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $i.repository $i.tag -}}
{{- end -}}
{{- end -}}

{{- define "sparkgate.serviceAccountName" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
{{- $sa := (index $.Values $component).serviceAccount -}}
{{- default (include "sparkgate.component" (list $ $component)) $sa.name -}}
{{- end -}}

{{/* The chart's own Secret: Redis and database URLs given as values, the dev Redis password. */}}
{{- define "sparkgate.secretName" -}}
{{- include "sparkgate.component" (list . "secrets") -}}
{{- end -}}

{{/* Where the gateways find the Redis URL: "<secret> <key>", or nothing (Sentinels only). */}}
{{- define "sparkgate.redisUrlRef" -}}
{{- $r := .Values.state.redis -}}
{{- if $r.existingSecret -}}
{{- printf "%s %s" $r.existingSecret $r.existingSecretKey -}}
{{- else if or $r.url .Values.devRedis.enabled -}}
{{- printf "%s redis-url" (include "sparkgate.secretName" .) -}}
{{- end -}}
{{- end -}}

{{/* Where the runner finds its database URL: "<secret> <key>", or nothing (SQLite). */}}
{{- define "sparkgate.databaseUrlRef" -}}
{{- $d := .Values.runner.database -}}
{{- if $d.existingSecret -}}
{{- printf "%s %s" $d.existingSecret $d.existingSecretKey -}}
{{- else if $d.url -}}
{{- printf "%s database-url" (include "sparkgate.secretName" .) -}}
{{- end -}}
{{- end -}}

{{/* Where the gateways find the driver token key: "<secret> <key>". */}}
{{- define "sparkgate.tokenKeyRef" -}}
{{- $t := .Values.driver.tokenKey -}}
{{- if $t.existingSecret -}}
{{- printf "%s %s" $t.existingSecret $t.existingSecretKey -}}
{{- else -}}
{{- printf "%s driver-token-key" (include "sparkgate.secretName" .) -}}
{{- end -}}
{{- end -}}

{{/* Paths inside every sparkgate container. */}}
{{- define "sparkgate.configFile" -}}/etc/sparkgate/config/sparkgate.yaml{{- end -}}
{{- define "sparkgate.stateDir" -}}/var/lib/sparkgate{{- end -}}
{{- define "sparkgate.tokenKeyDir" -}}/etc/sparkgate/driver-token{{- end -}}

{{/*
The environment of every sparkgate container: secrets reach sparkgate as SPARKGATE__* overrides
(config.py merges them over the file), so none of them is ever in the ConfigMap.
*/}}
{{- define "sparkgate.env" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
{{- if and (eq $component "gateway") (eq $.Values.state.backend "redis") -}}
{{- with include "sparkgate.redisUrlRef" $ }}
{{- $ref := splitList " " . }}
- name: SPARKGATE__STATE__REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ index $ref 0 }}
      key: {{ index $ref 1 }}
{{- end }}
{{- end }}
{{- if and (ne $component "gateway") (eq $.Values.state.backend "redis") }}
{{- /* Only gateways share state; the others would need the Redis URL just to load the file. */}}
- name: SPARKGATE__STATE__BACKEND
  value: local
{{- end }}
{{- if eq $component "runner" -}}
{{- with include "sparkgate.databaseUrlRef" $ }}
{{- $ref := splitList " " . }}
- name: SPARKGATE__RUNNER__DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ index $ref 0 }}
      key: {{ index $ref 1 }}
{{- end }}
{{- end }}
{{- with $.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes every sparkgate container mounts; "state" is each Deployment's own. */}}
{{- define "sparkgate.volumeMounts" -}}
- name: config
  mountPath: /etc/sparkgate/config
  readOnly: true
- name: state
  mountPath: {{ include "sparkgate.stateDir" . }}
- name: tmp
  mountPath: /tmp
{{- if .Values.auth.tokensSecret }}
- name: auth
  mountPath: /etc/sparkgate/auth
  readOnly: true
{{- end }}
{{- if .Values.tls.secretName }}
- name: tls
  mountPath: /etc/sparkgate/tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "sparkgate.volumes" -}}
- name: config
  configMap:
    name: {{ include "sparkgate.component" (list . "config") }}
- name: tmp
  emptyDir: {}
{{- if .Values.auth.tokensSecret }}
- name: auth
  secret:
    secretName: {{ .Values.auth.tokensSecret }}
    items:
      - {key: tokens.yaml, path: tokens.yaml}
{{- end }}
{{- if .Values.tls.secretName }}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
{{- end }}
{{- end -}}

{{/* Pod-level settings every Deployment takes from its component's values. */}}
{{- define "sparkgate.podPlacement" -}}
{{- $v := index . 1 -}}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (index . 0).Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
