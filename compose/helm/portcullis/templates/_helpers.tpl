{{/* Names and labels shared by every object. */}}
{{- define "portcullis.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "portcullis.labels" -}}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: portcullis
{{- end -}}

{{/* repository@sha256:... — a tag alone is refused (tags move, digests do not), and so is
the all-zero placeholder: a pod that cannot pull must not render. */}}
{{- define "portcullis.image" -}}
{{- $digest := required (printf "%s: a digest is required (images are pulled by digest; docs/deployment.md, \"Your image\")" .repository) .digest -}}
{{- if not (regexMatch "^sha256:[a-f0-9]{64}$" $digest) -}}
{{- fail (printf "%s: digest %q is not sha256:<64 hex>" .repository $digest) -}}
{{- end -}}
{{- if regexMatch "^sha256:0{64}$" $digest -}}
{{- fail (printf "%s: digest %q is the all-zero placeholder: set the digest your registry printed (docs/deployment.md, \"Your image\")" .repository $digest) -}}
{{- end -}}
{{- printf "%s@%s" .repository $digest -}}
{{- end -}}

{{/* The engine's file when engine.config is set, mounted into both containers. */}}
{{- define "portcullis.engineConfigMount" -}}
{name: engine-config, mountPath: /etc/portcullis/engine, readOnly: true}
{{- end -}}

{{/* The data volume's source (at most one of data.*), or nothing. */}}
{{- define "portcullis.dataSource" -}}
{{- $d := .Values.data -}}
{{- $sources := 0 -}}
{{- if $d.existingClaim }}{{ $sources = add1 $sources }}{{ end -}}
{{- if $d.persistentVolumeClaim.create }}{{ $sources = add1 $sources }}{{ end -}}
{{- if $d.csi }}{{ $sources = add1 $sources }}{{ end -}}
{{- if $d.emptyDir.enabled }}{{ $sources = add1 $sources }}{{ end -}}
{{- if gt $sources 1 -}}
{{- fail "data: set at most one of existingClaim, persistentVolumeClaim.create, csi, emptyDir.enabled" -}}
{{- end -}}
{{- if $d.existingClaim -}}
persistentVolumeClaim: {claimName: {{ $d.existingClaim }}, readOnly: true}
{{- else if $d.persistentVolumeClaim.create -}}
persistentVolumeClaim: {claimName: {{ include "portcullis.fullname" . }}-data, readOnly: true}
{{- else if $d.csi -}}
csi: {{- toYaml (merge (dict "readOnly" true) $d.csi) | nindent 2 }}
{{- else if $d.emptyDir.enabled -}}
emptyDir: {sizeLimit: {{ $d.emptyDir.sizeLimit }}}
{{- end -}}
{{- end -}}

{{/* The container security context every container gets (PSS restricted). */}}
{{- define "portcullis.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65534
runAsGroup: 65534
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "portcullis.gatewayContainer" -}}
name: gateway
image: {{ include "portcullis.image" .Values.image }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- if .Values.sidecar.native }}
restartPolicy: Always
{{- end }}
args:
  - run
  - --config
  - /etc/portcullis/gateway/gateway.yaml
  {{- with .Values.gateway.extraArgs }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
ports:
  - {name: https, containerPort: 8090, protocol: TCP}
  - {name: flight, containerPort: 50051, protocol: TCP}
  - {name: metrics, containerPort: 9090, protocol: TCP}
{{- if .Values.sidecar.native }}
# The engine starts once the gateway's listeners are up.
startupProbe:
  httpGet: {path: /healthz, port: metrics}
  periodSeconds: 1
  failureThreshold: 30
{{- end }}
livenessProbe:
  httpGet: {path: /healthz, port: metrics}
  periodSeconds: 10
  timeoutSeconds: 2
readinessProbe:
  httpGet: {path: /readyz, port: metrics}
  periodSeconds: 5
  timeoutSeconds: 3
{{- if gt (int .Values.gateway.preStopSleepSeconds) 0 }}
lifecycle:
  preStop:
    sleep: {seconds: {{ .Values.gateway.preStopSleepSeconds }}}
{{- end }}
resources: {{- toYaml .Values.gateway.resources | nindent 2 }}
securityContext: {{- include "portcullis.containerSecurityContext" . | nindent 2 }}
volumeMounts:
  - {name: gateway-config, mountPath: /etc/portcullis/gateway, readOnly: true}
  - {name: policies, mountPath: /etc/portcullis/policies, readOnly: true}
  {{- if .Values.engine.config }}
  - {{ include "portcullis.engineConfigMount" . }}
  {{- end }}
  {{- if .Values.policies.shadowConfigMap }}
  - {name: shadow-policies, mountPath: /etc/portcullis/shadow-policies, readOnly: true}
  {{- end }}
  {{- if .Values.spiffe.enabled }}
  - {name: svid, mountPath: /var/run/secrets/spiffe, readOnly: true}
  {{- else }}
  - {name: tls, mountPath: /var/run/secrets/portcullis/tls, readOnly: true}
  - {name: client-ca, mountPath: /var/run/secrets/portcullis/client-ca, readOnly: true}
  {{- end }}
  - {name: stamp-key, mountPath: /var/run/secrets/portcullis/stamp, readOnly: true}
  {{- if .Values.secrets.apiKeys }}
  - {name: api-keys, mountPath: /var/run/secrets/portcullis/api-keys, readOnly: true}
  {{- end }}
  {{- if .Values.secrets.browserSignIn }}
  - {name: browser-sign-in, mountPath: /var/run/secrets/portcullis/browser, readOnly: true}
  {{- end }}
  - {name: gateway-tmp, mountPath: /tmp}
  {{- with .Values.gateway.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}


{{/* gateway.yaml: gateway.config, reading the engine's file when there is one
(authorization.engine_config, unless set). */}}
{{- define "portcullis.gatewayConfig" -}}
{{- $config := deepCopy .Values.gateway.config -}}
{{- if and .Values.engine.config (not (hasKey $config.authorization "engine_config")) -}}
{{- $_ := set $config.authorization "engine_config" "/etc/portcullis/engine/engine.yaml" -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
