{{/*
Serving helpers (templates/serving.yaml, templates/serve-sync.yaml, templates/tests/test-serving.yaml).
*/}}
{{- define "thinkflow.serving.name" -}}
{{- $root := index . 0 -}}
{{- include "thinkflow.componentName" (list $root (printf "serving-%s" (index . 1))) }}
{{- end }}

{{- define "thinkflow.serving.secretName" -}}
{{- default (include "thinkflow.componentName" (list . "serving")) .Values.serving.apiKey.existingSecret }}
{{- end }}

{{/* The endpoint of one alias, as pods in the cluster reach it. Call with (list $ "champion"). */}}
{{- define "thinkflow.serving.url" -}}
{{- $root := index . 0 -}}
{{- printf "http://%s:%d/v1" (include "thinkflow.svcFqdn" (list $root (include "thinkflow.serving.name" .))) (int $root.Values.serving.port) }}
{{- end }}

{{/* MLflow client environment: tracking URI and the pipeline user's basic-auth credentials. */}}
{{- define "thinkflow.serving.mlflowEnv" -}}
- name: MLFLOW_TRACKING_URI
  value: {{ include "thinkflow.mlflow.url" . | quote }}
- name: MLFLOW_TRACKING_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ include "thinkflow.mlflow.pipelineSecretName" . }}
      key: MLFLOW_TRACKING_USERNAME
- name: MLFLOW_TRACKING_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "thinkflow.mlflow.pipelineSecretName" . }}
      key: MLFLOW_TRACKING_PASSWORD
{{- end }}
