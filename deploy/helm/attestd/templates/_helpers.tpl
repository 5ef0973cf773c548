{{/*
Helpers of the attestd chart. The chart keeps to a small part of Helm's
template language (README.md, "How the chart is tested"): tests/deploy.rs
renders it with its own renderer of that part and refuses anything else.
*/}}

{{/* The name of every object: the release name unless overridden. */}}
{{- define "attestd.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "attestd.selectorLabels" -}}
app.kubernetes.io/name: attestd
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{- define "attestd.labels" -}}
{{ include "attestd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: "{{ .Chart.Name }}-{{ .Chart.Version }}"
{{- end }}

{{/* The TLS Secret: tls.crt, tls.key, ca.crt. */}}
{{- define "attestd.tlsSecret" -}}
{{- if .Values.tls.secretName }}
{{- .Values.tls.secretName }}
{{- else }}
{{- include "attestd.fullname" . }}-tls
{{- end }}
{{- end }}

{{/*
attestd.toml, from the values. Paths are where the pod mounts things (see
attestd.pod); numbers go through toJson so that they stay whole numbers.
*/}}
{{- define "attestd.config" -}}
# attestd configuration, rendered by the attestd Helm chart from its values.
listen = "0.0.0.0:{{ .Values.ports.grpc }}"
data_dir = "/var/lib/attestd"
audit_key_file = "/var/lib/attestd/audit-key.pkcs8"
{{- if .Values.metrics.enabled }}
metrics_listen = "0.0.0.0:{{ .Values.ports.metrics }}"
{{- end }}
{{- if eq .Values.store.backend "sled" }}
cache_capacity_mb = {{ .Values.store.sled.cacheCapacityMb | toJson }}
{{- else if eq .Values.store.backend "postgres" }}
{{- else }}
{{- fail "store.backend must be sled or postgres" }}
{{- end }}
{{- if .Values.tls.enabled }}

[tls]
cert_file = "/etc/attestd/tls/tls.crt"
key_file = "/etc/attestd/tls/tls.key"
{{- if .Values.tls.clientCaSecretName }}
client_ca_files = ["/etc/attestd/client-ca/ca.crt"]
{{- end }}
reload_check_secs = {{ .Values.tls.reloadCheckSecs | toJson }}
{{- else if .Values.insecurePlaintext }}
insecure_plaintext = true
{{- else }}
{{- fail "tls.enabled is false: attestd serves plaintext gRPC on a pod address only with insecurePlaintext: true (bearer tokens then cross the network in the clear)" }}
{{- end }}
{{- if eq .Values.store.backend "postgres" }}

[store]
backend = "postgres"
url_file = "/etc/attestd/db/url"
pool_size = {{ .Values.store.postgres.poolSize | toJson }}
connect_timeout_secs = {{ .Values.store.postgres.connectTimeoutSecs | toJson }}
{{- if .Values.store.postgres.caSecret.name }}
ca_file = "/etc/attestd/db-ca/ca.crt"
{{- end }}
{{- end }}

[limits]
{{- range $name, $value := .Values.limits }}
{{ $name }} = {{ $value | toJson }}
{{- end }}

[release]
threshold = {{ .Values.release.threshold | toJson }}
keys = {{ .Values.release.keys | toJson }}
{{- range $principal := .Values.principals }}

[[principals]]
{{- range $key, $value := $principal }}
{{ $key }} = {{ $value | toJson }}
{{- end }}
{{- end }}
{{- end }}

{{/* The probe: attestd health against the pod's own listener. */}}
{{- define "attestd.healthCommand" -}}
- /usr/local/bin/attestd
- health
- --addr
- "127.0.0.1:{{ .Values.ports.grpc }}"
- --timeout-secs
- "3"
{{- if .Values.tls.enabled }}
- --ca-file
- /etc/attestd/tls/ca.crt
- --server-name
{{- if .Values.tls.serverName }}
- {{ .Values.tls.serverName | quote }}
{{- else }}
- "{{ include "attestd.fullname" . }}.{{ .Release.Namespace }}.svc"
{{- end }}
{{- end }}
{{- end }}

{{/*
The pod template, shared by the StatefulSet (sled) and the Deployment
(postgres). Secrets are mounted 0440 (288): read by the pod's group.
*/}}
{{- define "attestd.pod" -}}
metadata:
  labels:
    {{- include "attestd.selectorLabels" . | nindent 4 }}
  annotations:
    # A new configuration rolls the pods (attestd reads it at start).
    checksum/config: {{ include "attestd.config" . | sha256sum }}
    {{- if .Values.podAnnotations }}
    {{- toYaml .Values.podAnnotations | nindent 4 }}
    {{- end }}
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    runAsNonRoot: true
    runAsUser: {{ .Values.podSecurityContext.runAsUser }}
    runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
    fsGroup: {{ .Values.podSecurityContext.fsGroup }}
    fsGroupChangePolicy: OnRootMismatch
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: attestd
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command:
        - /usr/local/bin/attestd
      args:
        - serve
        - --config
        - /etc/attestd/attestd.toml
      env:
        - name: ATTESTD_LOG
          value: {{ .Values.logLevel | quote }}
      ports:
        - name: grpc
          containerPort: {{ .Values.ports.grpc }}
          protocol: TCP
        {{- if .Values.metrics.enabled }}
        - name: metrics
          containerPort: {{ .Values.ports.metrics }}
          protocol: TCP
        {{- end }}
      # Up to 2 minutes to start (a PostgreSQL replica may migrate the
      # schema first), then ready while it answers SERVING, restarted after
      # a minute without.
      startupProbe:
        exec:
          command:
            {{- include "attestd.healthCommand" . | nindent 12 }}
        periodSeconds: 5
        timeoutSeconds: 5
        failureThreshold: 24
      readinessProbe:
        exec:
          command:
            {{- include "attestd.healthCommand" . | nindent 12 }}
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 2
      livenessProbe:
        exec:
          command:
            {{- include "attestd.healthCommand" . | nindent 12 }}
        periodSeconds: 20
        timeoutSeconds: 5
        failureThreshold: 3
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        allowPrivilegeEscalation: false
        privileged: false
        readOnlyRootFilesystem: true
        capabilities:
          drop:
            - ALL
      volumeMounts:
        - name: config
          mountPath: /etc/attestd/attestd.toml
          subPath: attestd.toml
          readOnly: true
        - name: data
          mountPath: /var/lib/attestd
        {{- if or .Values.auditKey.secretName (eq .Values.store.backend "postgres") }}
        - name: audit-key
          mountPath: /var/lib/attestd/audit-key.pkcs8
          subPath: audit-key.pkcs8
          readOnly: true
        {{- end }}
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: /etc/attestd/tls
          readOnly: true
        {{- end }}
        {{- if .Values.tls.clientCaSecretName }}
        - name: client-ca
          mountPath: /etc/attestd/client-ca
          readOnly: true
        {{- end }}
        {{- if eq .Values.store.backend "postgres" }}
        - name: db-url
          mountPath: /etc/attestd/db
          readOnly: true
        {{- if .Values.store.postgres.caSecret.name }}
        - name: db-ca
          mountPath: /etc/attestd/db-ca
          readOnly: true
        {{- end }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "attestd.fullname" . }}
    {{- if eq .Values.store.backend "postgres" }}
    # The data directory holds only the audit key's public half here.
    - name: data
      emptyDir:
        sizeLimit: 16Mi
    - name: db-url
      secret:
        secretName: {{ required "store.postgres.urlSecret.name: the Secret holding the database URL" .Values.store.postgres.urlSecret.name }}
        defaultMode: 288
        items:
          - key: {{ .Values.store.postgres.urlSecret.key }}
            path: url
    {{- if .Values.store.postgres.caSecret.name }}
    - name: db-ca
      secret:
        secretName: {{ .Values.store.postgres.caSecret.name }}
        defaultMode: 288
        items:
          - key: {{ .Values.store.postgres.caSecret.key }}
            path: ca.crt
    {{- end }}
    {{- end }}
    {{- if or .Values.auditKey.secretName (eq .Values.store.backend "postgres") }}
    - name: audit-key
      secret:
        secretName: {{ required "auditKey.secretName: replicas on PostgreSQL must sign with one audit key (attestctl keygen --alg ed25519, then a Secret)" .Values.auditKey.secretName }}
        defaultMode: 288
        items:
          - key: {{ .Values.auditKey.key }}
            path: audit-key.pkcs8
    {{- end }}
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ include "attestd.tlsSecret" . }}
        defaultMode: 288
        items:
          - key: tls.crt
            path: tls.crt
          - key: tls.key
            path: tls.key
          - key: ca.crt
            path: ca.crt
    {{- end }}
    {{- if .Values.tls.clientCaSecretName }}
    - name: client-ca
      secret:
        secretName: {{ .Values.tls.clientCaSecretName }}
        defaultMode: 288
        items:
          - key: ca.crt
            path: ca.crt
    {{- end }}
  {{- if .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml .Values.nodeSelector | nindent 4 }}
  {{- end }}
  {{- if .Values.tolerations }}
  tolerations:
    {{- toYaml .Values.tolerations | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity:
    {{- toYaml .Values.affinity | nindent 4 }}
  {{- end }}
{{- end }}
