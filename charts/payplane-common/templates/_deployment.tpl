{{/* The service's Deployment. Hardened pod, native gRPC probes, a drain that finishes well
     inside terminationGracePeriodSeconds. */}}
{{- define "payplane.deployment" -}}
{{- $g := .Values.global | default dict -}}
{{- $gotel := $g.otel | default dict -}}
{{- $gdb := $g.database | default dict -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "payplane.fullname" . }}
  labels:
    {{- include "payplane.labels" . | nindent 4 }}
spec:
  {{- if not .Values.autoscaling.enabled }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  minReadySeconds: {{ .Values.minReadySeconds | default 0 }}
  selector:
    matchLabels:
      {{- include "payplane.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- include "payplane.selectorLabels" . | nindent 8 }}
        app.kubernetes.io/version: {{ include "payplane.version" . | quote }}
        app.kubernetes.io/part-of: payplane
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .Values.service.adminPort | quote }}
        prometheus.io/path: /metrics
        {{- if .Values.configChecksum }}
        checksum/config: {{ .Values.configChecksum | quote }}
        {{- end }}
        {{- with ((.Values.global | default dict).release | default dict) }}
        {{- with .commit }}
        payplane.io/commit: {{ . | quote }}
        {{- end }}
        {{- with .commitTime }}
        payplane.io/commit-time: {{ . | quote }}
        {{- end }}
        {{- end }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "payplane.serviceAccountName" . }}
      automountServiceAccountToken: {{ .Values.serviceAccount.automountToken | default false }}
      terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
      enableServiceLinks: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile:
          type: RuntimeDefault
      {{- if .Values.topologySpread.enabled }}
      topologySpreadConstraints:
        - maxSkew: {{ .Values.topologySpread.maxSkew }}
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "payplane.selectorLabels" . | nindent 14 }}
      {{- end }}
      containers:
        - name: {{ include "payplane.name" . }}
          image: {{ include "payplane.image" . }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          {{- with .Values.args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            - name: grpc
              containerPort: {{ .Values.service.grpcPort }}
              protocol: TCP
            - name: admin
              containerPort: {{ .Values.service.adminPort }}
              protocol: TCP
          env:
            - name: GRPC_ADDR
              value: "0.0.0.0:{{ .Values.service.grpcPort }}"
            - name: ADMIN_ADDR
              value: "0.0.0.0:{{ .Values.service.adminPort }}"
            # The pod's version label: a release that changes the image changes the label
            # (payplane release, ReleasePlan), so spans and metrics name what really runs.
            - name: SERVICE_VERSION
              valueFrom:
                fieldRef:
                  fieldPath: metadata.labels['app.kubernetes.io/version']
            - name: RUST_LOG
              value: {{ .Values.logLevel | default $g.logLevel | default "info" | quote }}
            - name: LOG_FORMAT
              value: json
            - name: DRAIN_TIMEOUT
              value: "{{ .Values.drainTimeoutSeconds }}s"
            # Keeps serving for a moment after SIGTERM while health says NOT_SERVING, so that
            # endpoints drop the pod before it stops accepting.
            - name: SHUTDOWN_DELAY
              value: "{{ .Values.shutdownDelaySeconds }}s"
            - name: OTEL_SERVICE_NAME
              value: {{ include "payplane.name" . | quote }}
            {{- $otel := .Values.otel.endpoint | default $gotel.endpoint }}
            {{- if $otel }}
            - name: OTEL_EXPORTER_OTLP_ENDPOINT
              value: {{ $otel | quote }}
            - name: OTEL_TRACES_SAMPLER
              value: parentbased_traceidratio
            - name: OTEL_TRACES_SAMPLER_ARG
              value: {{ .Values.otel.samplingRatio | default $gotel.samplingRatio | default 1.0 | quote }}
            {{- else }}
            - name: OTEL_SDK_DISABLED
              value: "true"
            {{- end }}
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            {{- if .Values.database.enabled }}
            {{- $secret := .Values.database.existingSecret | default $gdb.existingSecret }}
            - name: DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: {{ required (printf "%s: database.existingSecret (or global.database.existingSecret) must name a Secret holding the PostgreSQL URL" (include "payplane.name" .)) $secret }}
                  key: {{ .Values.database.secretKey | default (include "payplane.name" .) }}
            {{- end }}
            {{- range $name, $value := .Values.env }}
            - name: {{ $name }}
              value: {{ tpl (toString $value) $ | quote }}
            {{- end }}
          readinessProbe:
            grpc:
              port: {{ .Values.service.grpcPort }}
            periodSeconds: 2
            failureThreshold: 2
          # gRPC health turns NOT_SERVING for the whole shutdown delay and drain: liveness must
          # not kill a terminating pod before it has drained.
          livenessProbe:
            grpc:
              port: {{ .Values.service.grpcPort }}
            initialDelaySeconds: 10
            periodSeconds: 10
            failureThreshold: {{ max 3 (add (div (add .Values.shutdownDelaySeconds .Values.drainTimeoutSeconds) 10) 2) }}
          startupProbe:
            grpc:
              port: {{ .Values.service.grpcPort }}
            periodSeconds: 1
            failureThreshold: 60
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            privileged: false
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with .Values.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- with .Values.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
