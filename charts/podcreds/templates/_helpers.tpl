{{/* Chart name, overridable. */}}
{{- define "podcreds.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name: release-chart, unless the release name already contains the chart name. */}}
{{- define "podcreds.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "podcreds.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podcreds.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "podcreds.labels" -}}
{{ include "podcreds.labelsOf" (list . "operator") }}
{{- end }}

{{/* The labels of one component: (list $ "component"). */}}
{{- define "podcreds.labelsOf" -}}
{{- $ := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "podcreds.selectorLabels" $ }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/component: {{ index . 1 }}
app.kubernetes.io/part-of: podcreds
{{- with $.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the CRDs: the release's, as a CRD component. */}}
{{- define "podcreds.crdLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "podcreds.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: crds
app.kubernetes.io/part-of: podcreds
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "podcreds.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "podcreds.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Rules for what the operator does inside a namespace it manages bindings in. */}}
{{- define "podcreds.namespaceRules" -}}
# Reconciled objects: read bindings, write only their status.
- apiGroups: ["podcreds.dev"]
  resources: ["awsrolebindings"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["podcreds.dev"]
  resources: ["awsrolebindings/status"]
  verbs: ["patch"]
# The Secret's owner reference sets blockOwnerDeletion, which the
# OwnerReferencesPermissionEnforcement admission plugin allows only to those who may update the
# owner's finalizers. CRDs serve no such subresource: this grants nothing else.
- apiGroups: ["podcreds.dev"]
  resources: ["awsrolebindings/finalizers"]
  verbs: ["update"]
# Metadata-only watch of ServiceAccounts, to notice a missing one appearing.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["list", "watch"]
{{- if .Values.ecrPullSecrets.serviceAccounts }}
# imagePullSecret.addToServiceAccount: add (and remove) the binding's image-pull Secret in its
# ServiceAccount's imagePullSecrets.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "patch"]
{{- end }}
# Short-lived tokens to exchange with STS.
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
# The credential Secrets: metadata watch (label-selected), create, server-side apply, and delete
# of Secrets a binding left behind when its secretName changed.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Events about bindings (and, with consumers.watchPods, about pods that will go stale).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.consumers.watchPods }}
# consumers.watchPods: which pods read the credential Secrets (env, envFrom, volumes).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
{{- end }}
{{- if .Values.consumers.allowEviction }}
{{- if not .Values.consumers.watchPods }}
{{- fail "consumers.allowEviction needs consumers.watchPods: the operator evicts only pods it watched go stale" }}
{{- end }}
# consumers.allowEviction: evict pods that will go stale (spec.restartStaleConsumers), through
# the Eviction API, which PodDisruptionBudgets hold.
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
{{- end }}
{{- end }}

{{/* The admission policies this release installs, which the operator checks are in force. */}}
{{- define "podcreds.guards" -}}
{{- $guards := list }}
{{- if .Values.admissionPolicy.enabled }}
{{- $guards = concat $guards (list "binding-guard" "source-guard" "status-guard") }}
{{- end }}
{{- if .Values.operatorTokenPolicy.enabled }}
{{- $guards = concat $guards (list "token-guard" "secret-guard") }}
{{- end }}
{{- $names := list }}
{{- range $guards }}
{{- $names = append $names (printf "%s-%s" (include "podcreds.fullname" $) .) }}
{{- end }}
{{- join "," $names }}
{{- end }}
