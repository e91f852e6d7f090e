#!/usr/bin/env bash
# record.sh records incident.log.gz: the audit log a real kube-apiserver
# (with etcd, both built by test/e2e/build.sh) writes while kubectl, curl
# and a few token users act out an incident. See README.md. It is a one-off
# (times and UIDs change on every run), not a test.
#
#   internal/investigate/testdata/incident/record.sh [BIN_DIR]
#
# BIN_DIR holds kube-apiserver and etcd (default: test/e2e/bin); kubectl
# and curl come from PATH.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../../../test/e2e/bin}
work=$(mktemp -d)
trap 'kill $apiserver_pid $etcd_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
etcd_client=http://127.0.0.1:$(port)
etcd_peer=http://127.0.0.1:$(port)
api_port=$(port)
api=https://127.0.0.1:$api_port

"$bin/etcd" --name=rec --data-dir="$work/etcd" --listen-client-urls="$etcd_client" \
  --advertise-client-urls="$etcd_client" --listen-peer-urls="$etcd_peer" \
  --initial-advertise-peer-urls="$etcd_peer" --initial-cluster=rec="$etcd_peer" \
  --log-level=warn --unsafe-no-fsync >"$work/etcd.out" 2>&1 &
etcd_pid=$!
until curl -sf "$etcd_client/health" >/dev/null; do sleep 0.2; done

# The users: admin is a cluster admin (system:masters); attacker and
# developer hold no rights at first. A request with no token is
# system:anonymous; one with an unknown token fails authentication (401).
tok() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
admin_tok=$(tok) attacker_tok=$(tok) developer_tok=$(tok)
cat >"$work/tokens.csv" <<CSV
$admin_tok,admin,uid-admin,"system:masters"
$attacker_tok,attacker,uid-attacker,""
$developer_tok,developer,uid-developer,"developers"
CSV
openssl ecparam -name prime256v1 -genkey -noout -out "$work/sa.key" 2>/dev/null

# The audit policy: a common production choice. Secrets, configmaps and
# token reviews at Metadata (no values in the log), RBAC writes in full,
# other reads at Metadata, other writes at Request; no RequestReceived.
cat >"$work/policy.yaml" <<'YAML'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps"]
      - group: "authentication.k8s.io"
        resources: ["tokenreviews"]
  - level: Metadata
    verbs: ["get", "list", "watch"]
  - level: RequestResponse
    resources:
      - group: "rbac.authorization.k8s.io"
  - level: Request
YAML

"$bin/kube-apiserver" --etcd-servers="$etcd_client" --bind-address=127.0.0.1 \
  --secure-port="$api_port" --cert-dir="$work/certs" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$work/sa.key" --service-account-signing-key-file="$work/sa.key" \
  --service-cluster-ip-range=10.96.0.0/24 --endpoint-reconciler-type=none \
  --token-auth-file="$work/tokens.csv" --authorization-mode=Node,RBAC \
  --audit-policy-file="$work/policy.yaml" --audit-log-path="$work/audit.log" \
  --audit-log-format=json --audit-log-mode=blocking >"$work/apiserver.out" 2>&1 &
apiserver_pid=$!
until curl -skf -H "Authorization: Bearer $admin_tok" "$api/readyz" >/dev/null; do sleep 0.5; done

export HOME=$work/home
k() { local t=$1; shift; kubectl --server="$api" --insecure-skip-tls-verify --token="$t" "$@"; }
fails() { if "$@"; then echo "expected to fail: $*" >&2; exit 1; fi; }

# --- the incident ---
# admin prepares production: its default service account (no controller
# manager runs), a secret and a pod (it stays Pending: no kubelet).
k "$admin_tok" create namespace production
k "$admin_tok" create serviceaccount default -n production
k "$admin_tok" create secret generic db-creds -n production --from-literal=password=hunter2
k "$admin_tok" run web -n production --restart=Never --image=registry.example/web:1.0
sleep 1
# attacker probes with their own token: denied again and again.
for i in 1 2 3 4 5 6; do fails k "$attacker_tok" get secrets -n production; done
fails k "$attacker_tok" get pods -n production
fails k "$attacker_tok" get clusterrolebindings
sleep 1
# Someone without credentials tries too.
curl -sk "$api/api/v1/namespaces/production/secrets" >/dev/null
curl -sk "$api/api/v1/namespaces/production/secrets" >/dev/null
curl -sk "$api/version" >/dev/null
curl -sk -H "Authorization: Bearer not-a-known-token" "$api/api/v1/namespaces/production/secrets" >/dev/null
sleep 1
# admin creates the backdoor.
k "$admin_tok" create clusterrolebinding backdoor --clusterrole=cluster-admin --user=attacker
sleep 3 # the RBAC authorizer's cache catches up
# attacker, now cluster-admin, reads the secrets and writes a configmap.
k "$attacker_tok" get secrets -n production
k "$attacker_tok" get secret db-creds -n production -o yaml >/dev/null
k "$attacker_tok" get secrets -A >/dev/null
k "$attacker_tok" create configmap stolen -n production --from-literal=loot=db-creds
fails k "$attacker_tok" exec web -n production -- cat /etc/shadow
sleep 1
# admin acts as other users (impersonation).
fails k "$admin_tok" get secrets -n production --as developer
fails k "$admin_tok" get secrets -n production --as developer
k "$admin_tok" get secret db-creds -n production --as attacker -o name
fails k "$admin_tok" get pods -n production --as system:serviceaccount:production:default
sleep 1
# attacker covers their tracks.
k "$attacker_tok" delete clusterrolebinding backdoor

kill "$apiserver_pid"; wait "$apiserver_pid" || true
kill "$etcd_pid"; wait "$etcd_pid" || true
gzip -9n <"$work/audit.log" >"$here/incident.log.gz"
echo "wrote $here/incident.log.gz: $(gunzip -c "$here/incident.log.gz" | wc -l) events"
