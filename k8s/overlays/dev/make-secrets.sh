#!/usr/bin/env bash
# Throwaway credentials for the dev overlay on a local cluster: a random Redis password, a
# random peer secret for evaluators' shard calls and a self-signed certificate for the
# services' in-cluster names. Written into secrets/ beside
# this script (git ignores it); run once before `kubectl apply -k k8s/overlays/dev`.
#   k8s/overlays/dev/make-secrets.sh [DIR]     (default: the secrets/ folder beside this script)
set -euo pipefail
out=${1:-"$(dirname "$0")/secrets"}
mkdir -p "$out"
umask 077
password=$(openssl rand -hex 24)
printf 'REDIS_PASSWORD=%s\n' "$password" > "$out/redis.env"
printf 'CRYPTOREC_PEER_SECRET=%s\n' "$(openssl rand -hex 32)" > "$out/peer.env"
names="DNS:key-service,DNS:model-service,DNS:evaluator,DNS:*.cryptorec.svc.cluster.local"
names="$names,DNS:*.cryptorec,DNS:localhost,IP:127.0.0.1"
openssl req -x509 -newkey rsa:3072 -sha256 -days 30 -nodes -subj "/CN=cryptorec-dev" \
  -addext "subjectAltName=$names" -keyout "$out/tls.key" -out "$out/tls.crt" 2>/dev/null
echo "wrote $out/redis.env, $out/peer.env, $out/tls.crt, $out/tls.key (self-signed, 30 days)"
