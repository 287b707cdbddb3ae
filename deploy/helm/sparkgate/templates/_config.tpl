{{/*
sparkgate.yaml: the values' `config` with what the chart owns set over it. The chart owns what
its other objects depend on (ports the probes and Services use, the namespace the Roles are in,
the service account the driver Role is bound to), so these are refused in `config` (below)
rather than silently replaced.
*/}}

{{- define "sparkgate.config" -}}
{{- $c := mergeOverwrite (dict "runner" (dict "kubernetes" (dict "images" (dict "default" (include "sparkgate.driverImage" .))))) (deepCopy .Values.config) -}}
{{- range $section := list "gateway" "admin" "state" "kubernetes" "runner" "playground" "auth" "tls" -}}
{{- if not (index $c $section) }}{{ $_ := set $c $section (dict) }}{{ end -}}
{{- end -}}
{{- if not $c.kubernetes.pod }}{{ $_ := set $c.kubernetes "pod" (dict) }}{{ end -}}
{{- if not $c.runner.kubernetes }}{{ $_ := set $c.runner "kubernetes" (dict) }}{{ end -}}
{{- $_ := set $c "state_dir" (include "sparkgate.stateDir" .) -}}
{{- /* Both listeners on every interface of the Pod: the Services and the kubelet's probes reach them there. */ -}}
{{- $_ := set $c.gateway "host" "0.0.0.0" -}}
{{- $_ := set $c.gateway "port" 15002 -}}
{{- $_ := set $c.gateway "drain_seconds" .Values.gateway.drainSeconds -}}
{{- $_ := set $c.gateway "workers" .Values.gateway.workers -}}
{{- $_ := set $c.admin "enabled" true -}}
{{- $_ := set $c.admin "host" "0.0.0.0" -}}
{{- $_ := set $c.admin "port" 9090 -}}
{{- /* The URL carries a password: it comes from a Secret as SPARKGATE__STATE__REDIS_URL. */ -}}
{{- $_ := set $c.state "backend" .Values.state.backend -}}
{{- $_ := set $c.kubernetes "namespace" .Release.Namespace -}}
{{- /* Its driver Pods carry the release name: another release in the namespace leaves them alone. */ -}}
{{- $_ := set $c.kubernetes "instance" .Release.Name -}}
{{- $_ := set $c.kubernetes "drain_grace_seconds" .Values.driver.drainGraceSeconds -}}
{{- /* One key for all gateways: a replica, or the Pod replacing one, reaches the drivers others started. */ -}}
{{- $_ := set $c.kubernetes "token_key_file" (printf "%s/key" (include "sparkgate.tokenKeyDir" .)) -}}
{{- $_ := set $c.kubernetes.pod "image" (include "sparkgate.driverImage" .) -}}
{{- $_ := set $c.kubernetes.pod "service_account" (include "sparkgate.serviceAccountName" (list . "driver")) -}}
{{- $_ := set $c.runner "host" "0.0.0.0" -}}
{{- $_ := set $c.runner "port" 50051 -}}
{{- $_ := set $c.runner "gateway_url" (printf "sc://%s:%v" (include "sparkgate.component" (list . "gateway")) .Values.gateway.service.port) -}}
{{- $_ := set $c.runner.kubernetes "service_account" (include "sparkgate.serviceAccountName" (list . "driver")) -}}
{{- $_ := set $c.playground "host" "0.0.0.0" -}}
{{- $_ := set $c.playground "port" 8080 -}}
{{- $_ := set $c.playground "runner_target" (printf "%s:%v" (include "sparkgate.component" (list . "runner")) .Values.runner.service.port) -}}
{{- if .Values.auth.tokensSecret }}
{{- $_ := set $c.auth "tokens_file" "/etc/sparkgate/auth/tokens.yaml" -}}
{{- end }}
{{- if .Values.tls.secretName }}
{{- $_ := set $c.tls "cert_file" "/etc/sparkgate/tls/tls.crt" -}}
{{- $_ := set $c.tls "key_file" "/etc/sparkgate/tls/tls.key" -}}
{{- if .Values.tls.clientCA }}{{ $_ := set $c.tls "client_ca_file" "/etc/sparkgate/tls/ca.crt" }}{{ end -}}
{{- end }}
{{- /* Every environment is served by driver Pods: sparkgate runs one provider at a time. */ -}}
{{- range $name, $env := $c.environments -}}
{{- if $env }}{{ $_ := set $env "provider" "kubernetes" }}{{ else }}{{ $_ := set $c.environments $name (dict "provider" "kubernetes") }}{{ end -}}
{{- end -}}
{{- range $section := list "gateway" "admin" "state" "kubernetes" "runner" "playground" "auth" "tls" -}}
{{- if not (index $c $section) }}{{ $_ := unset $c $section }}{{ end -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/*
Settings refused in `config`, each with what to use instead; and combinations of values that
cannot work, refused before anything is installed.
*/}}
{{- define "sparkgate.validate" -}}
{{- $owned := dict
  "state_dir" "the chart mounts the state directory at /var/lib/sparkgate"
  "gateway.host" "the gateway listens on every address of its Pod"
  "gateway.port" "the Pod listens on 15002; gateway.service.port sets the Service's port"
  "gateway.drain_seconds" "set gateway.drainSeconds (the Pod's grace period follows it)"
  "gateway.workers" "set gateway.workers"
  "admin.host" "the probes need the admin endpoints on the Pod's address"
  "admin.port" "the probes and the admin Service use 9090"
  "admin.enabled" "the probes need the admin endpoints"
  "state.backend" "set state.backend"
  "state.redis_url" "it holds a password: set state.redis.url or state.redis.existingSecret (kept in a Secret)"
  "kubernetes.namespace" "driver Pods run in the release namespace, where the chart's Roles are"
  "kubernetes.kubeconfig" "the gateway uses its service account"
  "kubernetes.context" "the gateway uses its service account"
  "kubernetes.instance" "driver Pods carry the release name (the chart's NetworkPolicy and PodDisruptionBudget select them by it)"
  "kubernetes.drain_grace_seconds" "set driver.drainGraceSeconds"
  "kubernetes.token_key_file" "the chart mounts one key into every gateway: driver.tokenKey.existingSecret names yours"
  "kubernetes.pod.image" "set driver.image"
  "kubernetes.pod.service_account" "set driver.serviceAccount.name (the chart binds the driver Role to it)"
  "runner.host" "the runner listens on every address of its Pod"
  "runner.port" "the runner listens on 50051; runner.service.port sets the Service's port"
  "runner.gateway_url" "the runner reaches the gateway through its Service"
  "runner.database_url" "it holds a password: set runner.database.url or runner.database.existingSecret (kept in a Secret)"
  "runner.kubernetes.service_account" "set driver.serviceAccount.name (the chart binds the driver Role to it)"
  "playground.host" "the Playground listens on every address of its Pod"
  "playground.port" "the Playground listens on 8080; playground.service.port sets the Service's port"
  "playground.runner_target" "the Playground reaches the runner through its Service"
  "auth.tokens_file" "set auth.tokensSecret (the chart mounts it)"
  "tls.cert_file" "set tls.secretName (the chart mounts it)"
  "tls.key_file" "set tls.secretName (the chart mounts it)"
  "tls.client_ca_file" "set tls.clientCA (ca.crt of tls.secretName)"
-}}
{{- range $path, $why := $owned -}}
{{- $node := $.Values.config -}}
{{- $found := true -}}
{{- range $part := splitList "." $path -}}
{{- if and $found (kindIs "map" $node) (hasKey $node $part) }}{{ $node = index $node $part }}{{ else }}{{ $found = false }}{{ end -}}
{{- end -}}
{{- if $found }}{{ fail (printf "config.%s is set by the chart: %s" $path $why) }}{{ end -}}
{{- end -}}
{{- range $name, $env := .Values.config.environments -}}
{{- if and (kindIs "map" $env) (hasKey $env "provider") -}}
{{- fail (printf "config.environments.%s.provider is set by the chart: every environment is served by driver Pods (provider: kubernetes)" $name) -}}
{{- end -}}
{{- end -}}
{{- $shared := eq .Values.state.backend "redis" -}}
{{- if and (not $shared) (or (gt (int .Values.gateway.replicas) 1) .Values.gateway.autoscaling.enabled (gt (int .Values.gateway.workers) 1)) -}}
{{- fail "several gateways (gateway.replicas, gateway.autoscaling, gateway.workers) need state.backend: redis: they share sessions and drivers through it" -}}
{{- end -}}
{{- $sentinels := and .Values.config.state .Values.config.state.sentinels -}}
{{- if and $shared (not (include "sparkgate.redisUrlRef" .)) (not $sentinels) -}}
{{- fail "state.backend redis needs a Redis: state.redis.url, state.redis.existingSecret, devRedis.enabled, or config.state.sentinels" -}}
{{- end -}}
{{- if and .Values.devRedis.enabled (or .Values.state.redis.url .Values.state.redis.existingSecret (not $shared)) -}}
{{- fail "devRedis.enabled is for state.backend: redis without state.redis.url or state.redis.existingSecret" -}}
{{- end -}}
{{- if and .Values.playground.enabled (not .Values.runner.enabled) -}}
{{- fail "playground.enabled needs runner.enabled: the Playground runs jobs through the runner" -}}
{{- end -}}
{{- end -}}
