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

{{/* kubetrail.store returns serve's store flags, as setup deploy does: with
clickhouse.url (validated as --clickhouse is) --store and --spool-max-bytes,
else --max-size; each bound is 80% of the volume. Collectors share the
redaction key of Secret kubetrail-redact, so a copy gets the same markers. A URL with a user gets
password_file, the file of Secret kubetrail-clickhouse. */}}
{{- define "kubetrail.store" -}}
{{- $bound := div (mul (int .Values.storage.sizeGi) 4) 5 -}}
{{- $s := .Values.clickhouse.url -}}
{{- if not $s -}}
- --max-size={{ $bound }}GiB
{{- else -}}
{{- $u := urlParse $s -}}
{{- $form := "clickhouse://[USER@]HOST[:PORT]/DB[?cluster=NAME] or clickhouses://..." -}}
{{- if contains ":" $u.userinfo -}}
{{- fail "clickhouse.url: a password in the URL would be in the pod's arguments; put it in Secret kubetrail-clickhouse, key password (docs/deploy.md)" -}}
{{- end -}}
{{- if not (has $u.scheme (list "clickhouse" "clickhouses")) -}}
{{- fail (printf "clickhouse.url %q: want %s" $s $form) -}}
{{- end -}}
{{- if not $u.hostname -}}
{{- fail (printf "clickhouse.url %q: no host; want %s" $s $form) -}}
{{- end -}}
{{- $db := trimPrefix "/" $u.path -}}
{{- if not (regexMatch "^[A-Za-z_][A-Za-z0-9_]{0,63}$" $db) -}}
{{- fail (printf "clickhouse.url %q: database %q: want a name of letters, digits and _ (%s)" $s $db $form) -}}
{{- end -}}
{{- if $u.fragment -}}
{{- fail (printf "clickhouse.url %q: a #fragment means nothing here" $s) -}}
{{- end -}}
{{- if regexMatch "(^|[&;])(password_file|ca)(=|&|;|$)" $u.query -}}
{{- fail (printf "clickhouse.url %q: options password_file and ca name files in the pod, which the chart does not mount; the password comes from Secret kubetrail-clickhouse (docs/deploy.md)" $s) -}}
{{- end -}}
- --store={{ $s }}{{ if $u.userinfo }}{{ if contains "?" $s }}&{{ else }}?{{ end }}password_file=/etc/kubetrail/clickhouse/password{{ end }}
- --spool-max-bytes={{ $bound }}GiB
- --redact-key-file=/etc/kubetrail/redact/redact.key
{{- end -}}
{{- end }}

{{/* kubetrail.clickhousePassword is true when the password is read from
Secret kubetrail-clickhouse: clickhouse.url names a user. */}}
{{- define "kubetrail.clickhousePassword" -}}
{{- if .Values.clickhouse.url }}{{ if (urlParse .Values.clickhouse.url).userinfo }}true{{ end }}{{ end -}}
{{- end }}
