{{/*
Names
*/}}
{{- define "thinkflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "thinkflow.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "thinkflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of one component's objects: <fullname>-<component>. Call with (list $ "mlflow"). */}}
{{- define "thinkflow.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "thinkflow.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels. Call with (list $ "component").
*/}}
{{- define "thinkflow.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "thinkflow.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "thinkflow.labels" -}}
{{- $root := index . 0 -}}
{{ include "thinkflow.selectorLabels" . }}
helm.sh/chart: {{ include "thinkflow.chart" $root }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: thinkflow
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The label that lets a pod reach MLflow, MinIO and the inference endpoints through the NetworkPolicies. */}}
{{- define "thinkflow.clientLabel" -}}
thinkflow.io/client: "true"
{{- end }}

{{/*
Namespaces
*/}}
{{- define "thinkflow.pipelinesNamespace" -}}
{{- default .Release.Namespace .Values.pipelines.namespace }}
{{- end }}

{{/* The namespaces that hold the pipeline-facing objects: the release namespace, plus the pipelines one. */}}
{{- define "thinkflow.secretNamespaces" -}}
{{- $ns := list .Release.Namespace -}}
{{- $pns := include "thinkflow.pipelinesNamespace" . -}}
{{- if ne $pns .Release.Namespace }}{{ $ns = append $ns $pns }}{{ end }}
{{- join "," $ns }}
{{- end }}

{{/*
Images. Call with (list $ .Values.images.base). A digest pins the image; otherwise repository:tag
(tag defaulting to the chart's appVersion).
*/}}
{{- define "thinkflow.image" -}}
{{- $root := index . 0 -}}
{{- $img := index . 1 -}}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/* Pull policy: the configured one, or IfNotPresent for a digest and Always for a (mutable) tag. */}}
{{- define "thinkflow.pullPolicy" -}}
{{- $img := index . 1 -}}
{{- if $img.pullPolicy }}{{ $img.pullPolicy }}{{ else if $img.digest }}IfNotPresent{{ else }}Always{{ end }}
{{- end }}

{{/*
checkov skip for CKV_K8S_43 ("image should use digest") on objects running a ThinkFlow image that has no
digest set: these images are built by images/build.sh, which prints the digest to set in images.*.digest.
Call with (list $ .Values.images.base) inside metadata.annotations.
*/}}
{{- define "thinkflow.digestSkipAnnotation" -}}
{{- $img := index . 1 -}}
{{- if not $img.digest }}
checkov.io/skip1: CKV_K8S_43=ThinkFlow image built by images/build.sh; pin it by setting images.*.digest to the digest build.sh prints
{{- end }}
{{- end }}

{{/*
Security contexts: every pod non-root with seccomp RuntimeDefault; every container with a read-only root
filesystem, no privilege escalation and all capabilities dropped.
*/}}
{{- define "thinkflow.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "thinkflow.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "thinkflow.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Endpoints
*/}}
{{- define "thinkflow.svcFqdn" -}}
{{- $root := index . 0 -}}
{{- printf "%s.%s.svc.%s" (index . 1) $root.Release.Namespace $root.Values.clusterDomain }}
{{- end }}

{{- define "thinkflow.mlflow.url" -}}
{{- printf "http://%s:%d" (include "thinkflow.svcFqdn" (list . (include "thinkflow.componentName" (list . "mlflow")))) (int .Values.mlflow.port) }}
{{- end }}

{{/* S3 endpoint URL as clients use it (scheme://host[:port]). */}}
{{- define "thinkflow.s3.endpoint" -}}
{{- if .Values.minio.enabled }}
{{- printf "http://%s:9000" (include "thinkflow.svcFqdn" (list . (include "thinkflow.componentName" (list . "minio")))) }}
{{- else }}
{{- .Values.s3.endpoint | trimSuffix "/" }}
{{- end }}
{{- end }}

{{/*
Secret names
*/}}
{{- define "thinkflow.s3.secretName" -}}
{{- default "thinkflow-s3" .Values.s3.existingSecret }}
{{- end }}

{{- define "thinkflow.mlflow.secretName" -}}
{{- default "thinkflow-mlflow" .Values.mlflow.auth.existingSecret }}
{{- end }}

{{- define "thinkflow.mlflow.pipelineSecretName" -}}
{{- default "thinkflow-mlflow-pipeline" .Values.mlflow.auth.pipelineUser.existingSecret }}
{{- end }}

{{- define "thinkflow.mlflow.serverSecretName" -}}
{{- default (include "thinkflow.componentName" (list . "mlflow-server")) .Values.mlflow.auth.secretKeyExistingSecret }}
{{- end }}

{{- define "thinkflow.teachers.secretName" -}}
{{- default "thinkflow-teachers" .Values.teachers.existingSecret }}
{{- end }}

{{- define "thinkflow.rewardModel.secretName" -}}
{{- default "thinkflow-reward-model" .Values.rewardModel.existingSecret }}
{{- end }}

{{- define "thinkflow.minio.secretName" -}}
{{- default (include "thinkflow.componentName" (list . "minio")) .Values.minio.existingSecret }}
{{- end }}

{{- define "thinkflow.postgres.secretName" -}}
{{- default (include "thinkflow.componentName" (list . "postgres")) .Values.postgres.existingSecret }}
{{- end }}

{{/*
A generated credential, created once: the value already stored in the release namespace's Secret (lookup),
or a new random one on first install. Returns the base64-encoded value.
Call with (dict "root" $ "secret" "name" "key" "KEY" "length" 40 "prefix" "").
*/}}
{{- define "thinkflow.generated" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- index $existing.data .key }}
{{- else }}
{{- printf "%s%s" (default "" .prefix) (randAlphaNum (int .length)) | b64enc }}
{{- end }}
{{- end }}

{{/*
Inference model helpers
*/}}
{{- define "thinkflow.inference.envKey" -}}
{{- printf "THINKFLOW_%s_BASE_URL" (. | upper | replace "-" "_") }}
{{- end }}

{{/* An inference model's served name: its servedModelName, else inference.servedModelNames[name]. (list $ model) */}}
{{- define "thinkflow.inference.servedModelName" -}}
{{- $root := index . 0 }}{{- $m := index . 1 }}
{{- $name := $m.servedModelName | default (index ($root.Values.inference.servedModelNames | default dict) $m.name) }}
{{- if not $name }}
{{- fail (printf "inference.models[%s].servedModelName is required (no default in inference.servedModelNames for %q)" $m.name $m.name) }}
{{- end }}
{{- $name }}
{{- end }}

{{/*
Cross-field checks with messages that name the value to set.
*/}}
{{- define "thinkflow.validate" -}}
{{- if and (not .Values.minio.enabled) (not .Values.s3.endpoint) }}
{{- fail "s3.endpoint is required when minio.enabled=false (e.g. https://s3.us-east-1.amazonaws.com)" }}
{{- end }}
{{- if and (not .Values.minio.enabled) (not .Values.s3.existingSecret) }}
{{- fail "s3.existingSecret is required when minio.enabled=false: create a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (name it thinkflow-s3 for the pipelines)" }}
{{- end }}
{{- if and (not .Values.postgres.enabled) (not .Values.mlflow.backendStore.existingSecret) }}
{{- fail "mlflow.backendStore.existingSecret is required when postgres.enabled=false: a Secret holding the database URI" }}
{{- end }}
{{- if and .Values.mlflow.ingress.enabled (not .Values.mlflow.ingress.hosts) }}
{{- fail "mlflow.ingress.enabled=true needs at least one host in mlflow.ingress.hosts" }}
{{- end }}
{{- if and .Values.mlflow.ingress.enabled .Values.networkPolicy.enabled (not .Values.mlflow.ingress.controllerFrom) }}
{{- fail "mlflow.ingress.controllerFrom is required with mlflow.ingress.enabled and networkPolicy.enabled: the NetworkPolicy peer of your ingress controller, e.g. [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}}]" }}
{{- end }}
{{- if and .Values.inference.enabled (not .Values.inference.models) }}
{{- fail "inference.enabled=true needs at least one entry in inference.models" }}
{{- end }}
{{- range .Values.inference.models }}
{{- if and (not .source.uri) (not (and .source.pvc .source.pvc.claimName)) }}
{{- fail (printf "inference.models[%s].source needs uri (s3://...) or pvc.claimName" .name) }}
{{- end }}
{{- if and .source.uri .source.pvc }}
{{- if .source.pvc.claimName }}
{{- fail (printf "inference.models[%s].source: set uri or pvc, not both" .name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The kfp-launcher `providers` block (KFP v2 launcher object-store configuration) for the s3:// pipeline root.
Call with (dict "root" $ "url" (urlParse endpoint)).
*/}}
{{- define "thinkflow.launcherProviders" -}}
{{- $root := .root -}}
s3:
  default:
    endpoint: {{ .url.host }}
    region: {{ $root.Values.s3.region }}
    disableSSL: {{ eq .url.scheme "http" }}
    forcePathStyle: true
    credentials:
      fromEnv: false
      secretRef:
        secretName: {{ include "thinkflow.s3.secretName" $root }}
        accessKeyKey: AWS_ACCESS_KEY_ID
        secretKeyKey: AWS_SECRET_ACCESS_KEY
{{- end }}
