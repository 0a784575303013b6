{{/* The service's Rollout (rollout.enabled): new versions of its Deployment are released as a
     canary by the rollout controller instead of rolling by themselves. The canary strategy is
     the chart's `rollout.canary`, rendered through `tpl` so that it can name this release's
     addresses (e.g. {{ include "payplane.grpcUrl" . }} for the ledger guard). */}}
{{- define "payplane.rollout" -}}
{{- $r := .Values.rollout | default dict -}}
{{- if $r.enabled }}
apiVersion: payplane.io/v1alpha1
kind: Rollout
metadata:
  name: {{ include "payplane.fullname" . }}
  labels:
    {{- include "payplane.labels" . | nindent 4 }}
spec:
  deploymentName: {{ include "payplane.fullname" . }}
  {{- with $r.progressDeadlineSeconds }}
  progressDeadlineSeconds: {{ . }}
  {{- end }}
  {{- with $r.revisionHistoryLimit }}
  revisionHistoryLimit: {{ . }}
  {{- end }}
  strategy:
    canary:
      {{- tpl (toYaml $r.canary) . | nindent 6 }}
{{- end }}
{{- end -}}
