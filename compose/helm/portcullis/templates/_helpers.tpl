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

{{/* repository@sha256:... — a tag alone is refused: tags move, digests do not. */}}
{{- define "portcullis.image" -}}
{{- $digest := required "image.digest is required (images are pulled by digest)" .digest -}}
{{- if not (regexMatch "^sha256:[a-f0-9]{64}$" $digest) -}}
{{- fail (printf "image digest %q is not sha256:<64 hex>" $digest) -}}
{{- end -}}
{{- printf "%s@%s" .repository $digest -}}
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
args: [run, --config, /etc/portcullis/gateway/gateway.yaml]
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
{{- end -}}
