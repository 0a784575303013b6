{{- define "payplane.serviceAccount" -}}
{{- if .Values.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "payplane.serviceAccountName" . }}
  labels:
    {{- include "payplane.labels" . | nindent 4 }}
automountServiceAccountToken: false
{{- end }}
{{- end -}}

{{- define "payplane.pdb" -}}
{{- if .Values.podDisruptionBudget.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "payplane.fullname" . }}
  labels:
    {{- include "payplane.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "payplane.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{- define "payplane.hpa" -}}
{{- if .Values.autoscaling.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "payplane.fullname" . }}
  labels:
    {{- include "payplane.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "payplane.fullname" . }}
  minReplicas: {{ .Values.autoscaling.minReplicas }}
  maxReplicas: {{ .Values.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .Values.autoscaling.targetCPUUtilizationPercentage }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: {{ .Values.autoscaling.scaleDownStabilizationSeconds }}
{{- end }}
{{- end -}}

{{/* Ingress from pods of this release only (gRPC) and from anywhere to the admin port
     (Prometheus). Egress is left open: DNS, PostgreSQL and the OTLP collector live outside. */}}
{{- define "payplane.networkPolicy" -}}
{{- if .Values.networkPolicy.enabled }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "payplane.fullname" . }}
  labels:
    {{- include "payplane.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "payplane.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    - from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/instance: {{ .Release.Name }}
        {{- with .Values.networkPolicy.extraFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - port: grpc
    - ports:
        - port: admin
{{- end }}
{{- end -}}

{{- define "payplane.serviceMonitor" -}}
{{- if .Values.serviceMonitor.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "payplane.fullname" . }}
  labels:
    {{- include "payplane.labels" . | nindent 4 }}
spec:
  selector:
    matchLabels:
      {{- include "payplane.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: admin
      path: /metrics
      interval: {{ .Values.serviceMonitor.interval }}
{{- end }}
{{- end -}}

{{/* Everything a service chart renders, separated by document markers. */}}
{{- define "payplane.all" -}}
{{ include "payplane.deployment" . }}
---
{{ include "payplane.services" . }}
{{- $sa := include "payplane.serviceAccount" . | trim }}
{{- if $sa }}
---
{{ $sa }}
{{- end }}
{{- $pdb := include "payplane.pdb" . | trim }}
{{- if $pdb }}
---
{{ $pdb }}
{{- end }}
{{- $hpa := include "payplane.hpa" . | trim }}
{{- if $hpa }}
---
{{ $hpa }}
{{- end }}
{{- $np := include "payplane.networkPolicy" . | trim }}
{{- if $np }}
---
{{ $np }}
{{- end }}
{{- $ro := include "payplane.rollout" . | trim }}
{{- if $ro }}
---
{{ $ro }}
{{- end }}
{{- $sm := include "payplane.serviceMonitor" . | trim }}
{{- if $sm }}
---
{{ $sm }}
{{- end }}
{{- end -}}
