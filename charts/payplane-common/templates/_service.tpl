{{/* Two Services: a normal one (a stable virtual IP for tools and probes) and a headless one
     that our clients resolve to every ready pod, to balance per request across versions. */}}
{{- define "payplane.services" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "payplane.fullname" . }}
  labels:
    {{- include "payplane.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "payplane.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ .Values.service.grpcPort }}
      targetPort: grpc
      appProtocol: kubernetes.io/h2c
    - name: admin
      port: {{ .Values.service.adminPort }}
      targetPort: admin
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "payplane.fullname" . }}-headless
  labels:
    {{- include "payplane.labels" . | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: false
  selector:
    {{- include "payplane.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ .Values.service.grpcPort }}
      targetPort: grpc
      appProtocol: kubernetes.io/h2c
{{- end -}}
