{{/* Names, labels and the operator's RBAC rules. */}}

{{- define "cachefleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object name: the release name, unless it lacks the chart name. */}}
{{- define "cachefleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cachefleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cachefleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cachefleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "cachefleet.labels" -}}
helm.sh/chart: {{ include "cachefleet.chart" . }}
app.kubernetes.io/name: {{ include "cachefleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: cachefleet
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cachefleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cachefleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false (the operator needs an existing ServiceAccount)" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cachefleet.image" -}}
{{- $repository := .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The labels of the cache node pods the operator renders (operator/.../domain/render.py). */}}
{{- define "cachefleet.nodePodLabels" -}}
app.kubernetes.io/name: cachefleet-node
app.kubernetes.io/component: node
app.kubernetes.io/managed-by: cachefleet-operator
{{- end }}

{{/*
The operator's rules: exactly what it calls (docs/operator.md, "RBAC"). The same list becomes
the ClusterRole (all namespaces) or a Role in each watched namespace. CacheInvalidations: read
and watched, results written to /status only (one-shot runs, no finalizer, no annotations).
*/}}
{{- define "cachefleet.operatorRules" -}}
- apiGroups: ["cachefleet.io"]
  resources: ["semanticcaches"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["cachefleet.io"]
  resources: ["semanticcaches/status"]
  verbs: ["patch"]
- apiGroups: ["cachefleet.io"]
  resources: ["modelversions"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["cachefleet.io"]
  resources: ["modelversions/status"]
  verbs: ["patch"]
- apiGroups: ["cachefleet.io"]
  resources: ["cacheinvalidations"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["cachefleet.io"]
  resources: ["cacheinvalidations/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["statefulsets", "deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["milvus.io"]
  resources: ["milvuses"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* The kinds namespace users work with (aggregated view/edit roles). */}}
{{- define "cachefleet.userResources" -}}
["semanticcaches", "modelversions", "cacheinvalidations"]
{{- end }}

{{/*
The chart's labels plus `app.kubernetes.io/component` (default operator) plus extra ones from
values: (list $ extraLabels [component]). The chart's labels win, so extra labels can never
break a selector.
*/}}
{{- define "cachefleet.withExtraLabels" -}}
{{- $root := index . 0 }}
{{- $component := "operator" }}
{{- if gt (len .) 2 }}{{ $component = index . 2 }}{{ end }}
{{- $own := include "cachefleet.labels" $root | fromYaml }}
{{- $_ := set $own "app.kubernetes.io/component" $component }}
{{- toYaml (merge $own (deepCopy (default (dict) (index . 1)))) }}
{{- end }}
