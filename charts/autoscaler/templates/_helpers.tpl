{{/* Chart name. */}}
{{- define "autoscaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release name, plus the chart name if the release name does not contain it. */}}
{{- define "autoscaler.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "autoscaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "autoscaler.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{- define "autoscaler.labels" -}}
{{ include "autoscaler.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | trimPrefix "v" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{- with .Values.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "autoscaler.serviceAccountName" -}}
{{- if .Values.rbac.serviceAccount.create -}}
{{- default (include "autoscaler.fullname" .) .Values.rbac.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.rbac.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* True (non-empty) when node groups are configured: only then does anything run. */}}
{{- define "autoscaler.enabled" -}}
{{- if or .Values.autoDiscovery.clusterName .Values.autoscalingGroups -}}true{{- end -}}
{{- end -}}

{{/* Fixed names the binary relies on. */}}
{{- define "autoscaler.priorityConfigMapName" -}}cluster-autoscaler-priority-expander{{- end -}}
{{- define "autoscaler.overprovisioningName" -}}autoscaler-overprovisioning{{- end -}}

{{/*
Flags as a YAML map {flag: value}: the chart's own flags, then extraArgs on top
(a null extraArgs value removes the flag). Repeated flags (--nodes) are not in
this map, see "autoscaler.args".
*/}}
{{- define "autoscaler.flags" -}}
{{- $f := dict -}}
{{- $_ := set $f "cloud-provider" .Values.cloudProvider -}}
{{- $_ := set $f "namespace" .Release.Namespace -}}
{{- if .Values.autoDiscovery.clusterName -}}
{{- $_ := set $f "node-group-auto-discovery" (printf "asg:tag=%s" (tpl (join "," .Values.autoDiscovery.tags) .)) -}}
{{- end -}}
{{- if .Values.awsRegion -}}{{- $_ := set $f "aws-region" .Values.awsRegion -}}{{- end -}}
{{- $_ := set $f "expander" .Values.expander -}}
{{- $_ := set $f "leader-elect" .Values.leaderElection.enabled -}}
{{- $_ := set $f "status-config-map-name" .Values.statusConfigMapName -}}
{{- $_ := set $f "metrics-address" (printf ":%v" .Values.service.servicePort) -}}
{{- $_ := set $f "dry-run" .Values.dryRun -}}
{{- $_ := set $f "ice-cooloff" .Values.iceCooloff.initial -}}
{{- $_ := set $f "ice-cooloff-max" .Values.iceCooloff.max -}}
{{- $_ := set $f "drain-back-after" .Values.drainBack.after -}}
{{- $_ := set $f "drain-back-budget" .Values.drainBack.budget -}}
{{- $_ := set $f "balance-zones" .Values.zoneBalancing.enabled -}}
{{- $_ := set $f "zone-skew-threshold" .Values.zoneBalancing.skewThreshold -}}
{{- if and .Values.overprovisioning.enabled .Values.overprovisioning.headroom.enabled -}}
{{- $_ := set $f "headroom" true -}}
{{- $_ := set $f "headroom-max-fraction" .Values.overprovisioning.headroom.maxFraction -}}
{{- $_ := set $f "headroom-hold" .Values.overprovisioning.headroom.hold -}}
{{- with .Values.overprovisioning.resources.requests -}}{{- if .cpu -}}{{- $_ := set $f "headroom-placeholder-cpu" (toString .cpu) -}}{{- end -}}{{- end -}}
{{- end -}}
{{- if .Values.eventQueue.url -}}{{- $_ := set $f "event-queue-url" .Values.eventQueue.url -}}{{- end -}}
{{- if .Values.recording.enabled -}}{{- $_ := set $f "record-dir" "/recording" -}}{{- $_ := set $f "record-max-bytes" (int64 .Values.recording.maxBytes) -}}{{- end -}}
{{- range $k, $v := .Values.extraArgs -}}
{{- $key := regexFind "^[^_]+" $k -}}
{{- if eq $key $k -}}
{{- if kindIs "invalid" $v -}}{{- $_ := unset $f $key -}}{{- else -}}{{- $_ := set $f $key $v -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $f -}}
{{- end -}}

{{/* Container args, one per line ("- --flag=value"), flags sorted by name. */}}
{{- define "autoscaler.args" -}}
{{- $f := include "autoscaler.flags" . | fromYaml -}}
{{- range $k := keys $f | sortAlpha }}
- {{ printf "--%s=%s" $k (include "autoscaler.value" (index $f $k)) | quote }}
{{- end }}
{{- range .Values.autoscalingGroups }}
- {{ printf "--nodes=%v:%v:%s" (required "autoscalingGroups[].minSize is required" .minSize) (required "autoscalingGroups[].maxSize is required" .maxSize) (required "autoscalingGroups[].name is required" .name) | quote }}
{{- end }}
{{- if and .Values.overprovisioning.enabled .Values.overprovisioning.headroom.enabled }}
{{- range .Values.overprovisioning.headroom.windows }}
- {{ printf "--headroom-window=%s" . | quote }}
{{- end }}
{{- end }}
{{- range $k, $v := .Values.extraArgs }}
{{- $key := regexFind "^[^_]+" $k }}
{{- if and (ne $key $k) (not (kindIs "invalid" $v)) }}
- {{ printf "--%s=%s" $key (include "autoscaler.value" $v) | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Lease name used for leader election (CA's default). */}}
{{- define "autoscaler.leaseName" -}}
{{- $f := include "autoscaler.flags" . | fromYaml -}}
{{- default "cluster-autoscaler" (index $f "leader-elect-resource-name") -}}
{{- end -}}

{{- define "autoscaler.statusConfigMapName" -}}
{{- $f := include "autoscaler.flags" . | fromYaml -}}
{{- default "cluster-autoscaler-status" (index $f "status-config-map-name") -}}
{{- end -}}

{{/* A flag value as text; whole floats (YAML numbers) print as integers, never as 1e+06. */}}
{{- define "autoscaler.value" -}}
{{- if and (kindIs "float64" .) (eq . (float64 (int64 .))) -}}
{{- int64 . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}
