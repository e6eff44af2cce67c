#!/bin/sh
# A Sentinel in a pod of StatefulSet/redis: three of them (quorum 2) watch the primary and
# promote a replica when it has not answered for 5 s. Sentinel rewrites its own configuration
# as it learns, so it lives in a writable memory-backed file.
. /scripts/common.sh
PRIMARY=$(find_primary)
umask 077
cat > "$CONF_DIR/sentinel.conf" <<CONF
port 26379
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $ME
requirepass $PASSWORD
sentinel monitor $PRIMARY_NAME $PRIMARY 6379 2
sentinel auth-pass $PRIMARY_NAME $PASSWORD
sentinel down-after-milliseconds $PRIMARY_NAME 5000
sentinel failover-timeout $PRIMARY_NAME 60000
sentinel parallel-syncs $PRIMARY_NAME 1
CONF
exec redis-server "$CONF_DIR/sentinel.conf" --sentinel
