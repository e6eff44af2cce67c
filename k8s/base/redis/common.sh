# Shared by start-redis.sh and start-sentinel.sh (sourced, POSIX sh). Environment:
# POD_NAME, POD_NAMESPACE (downward API); the password is read from the mounted Secret, so it
# never appears on a command line or in the pod spec.
set -eu
SERVICE=redis                       # the headless Service that names each pod
PRIMARY_NAME=cryptorec              # what the Sentinels call the primary
REPLICAS=${REDIS_REPLICAS:-3}
PASSWORD=$(cat "${PASSWORD_FILE:-/etc/redis-secret/REDIS_PASSWORD}")
export REDISCLI_AUTH="$PASSWORD"    # redis-cli reads it from here, not from its arguments
DOMAIN="$SERVICE.$POD_NAMESPACE.svc"
ME="$POD_NAME.$DOMAIN"
CONF_DIR=${CONF_DIR:-/run/redis}

# The primary's host now: the first Sentinel that answers knows it (after a failover it is
# not redis-0). On the very first start none answers yet, and redis-0 is the primary.
find_primary() {
  i=0
  while [ "$i" -lt "$REPLICAS" ]; do
    answer=$(timeout 3 redis-cli --no-auth-warning -h "redis-$i.$DOMAIN" -p 26379 \
      sentinel get-master-addr-by-name "$PRIMARY_NAME" 2>/dev/null | head -n 1 || true)
    case "$answer" in
      ""|*ERR*|*NOAUTH*|*WRONGPASS*) ;;
      *) echo "$answer"; return 0 ;;
    esac
    i=$((i + 1))
  done
  echo "redis-0.$DOMAIN"
}
