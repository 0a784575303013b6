{{/* Names, labels and image of a payplane service chart. */}}

{{- define "payplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart>, unless the release name already contains the chart name. */}}
{{- define "payplane.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "payplane.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Selectors use name and instance only: they are immutable on a Deployment. */}}
{{- define "payplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "payplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "payplane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "payplane.selectorLabels" . }}
app.kubernetes.io/version: {{ include "payplane.version" . | quote }}
app.kubernetes.io/component: {{ .Values.component | default "service" }}
app.kubernetes.io/part-of: payplane
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "payplane.global" -}}
{{- $g := .Values.global | default dict -}}
{{- toYaml $g -}}
{{- end -}}

{{/* The image tag: the chart's own, else the shared one, else the chart's appVersion. */}}
{{- define "payplane.version" -}}
{{- $g := .Values.global | default dict -}}
{{- $gi := $g.image | default dict -}}
{{- .Values.image.tag | default $gi.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "payplane.image" -}}
{{- $g := .Values.global | default dict -}}
{{- $gi := $g.image | default dict -}}
{{- $registry := .Values.image.registry | default $gi.registry -}}
{{- $repo := .Values.image.repository -}}
{{- if $registry -}}{{- printf "%s/%s:%s" $registry $repo (include "payplane.version" .) -}}
{{- else -}}{{- printf "%s:%s" $repo (include "payplane.version" .) -}}{{- end -}}
{{- end -}}

{{- define "payplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "payplane.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Address other services use to reach this one: the headless Service, so that clients
     resolve every ready pod and balance per request (stable and canary alike). */}}
{{- define "payplane.grpcUrl" -}}
{{- printf "http://%s-headless.%s.svc.cluster.local:%v" (include "payplane.fullname" .) .Release.Namespace .Values.service.grpcPort -}}
{{- end -}}

{{/* URL of a sibling service of the same release: payplane.siblingUrl (list . "routing") */}}
{{- define "payplane.siblingUrl" -}}
{{- $ctx := index . 0 -}}
{{- $name := index . 1 -}}
{{- $full := ternary $ctx.Release.Name (printf "%s-%s" $ctx.Release.Name $name) (contains $name $ctx.Release.Name) -}}
{{- printf "http://%s-headless.%s.svc.cluster.local:50051" ($full | trunc 63 | trimSuffix "-") $ctx.Release.Namespace -}}
{{- end -}}
