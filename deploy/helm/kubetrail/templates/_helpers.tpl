{{/* kubetrail.labels are the labels of the component given as the context. */}}
{{- define "kubetrail.labels" -}}
app.kubernetes.io/name: kubetrail
app.kubernetes.io/component: {{ . }}
{{- end }}

{{/* kubetrail.containerSecurity: no escalation, no capability, a read-only root. */}}
{{- define "kubetrail.containerSecurity" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/* kubetrail.goMemLimit lets the Go runtime collect before the memory limit. */}}
{{- define "kubetrail.goMemLimit" -}}
- name: GOMEMLIMIT
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
{{- end }}
