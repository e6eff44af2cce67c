#!/bin/sh
# Redis in a pod of StatefulSet/redis: the primary if the Sentinels say so (or, on a first
# start, if this is redis-0), else a replica of it. The configuration, password included, is
# written to a memory-backed file: nothing secret on the command line.
. /scripts/common.sh
PRIMARY=$(find_primary)
umask 077
{
  echo "port 6379"
  echo "dir /data"
  # Append-only file: every acknowledged write survives a restart of this pod.
  echo "appendonly yes"
  echo "appendfsync everysec"
  # Bounded below the container's limit (an AOF rewrite forks); when full, writes are refused
  # (RESOURCE_EXHAUSTED for the services) and no model, pointer or counter is ever evicted.
  echo "maxmemory ${REDIS_MAXMEMORY:-1536mb}"
  echo "maxmemory-policy noeviction"
  echo "requirepass $PASSWORD"
  echo "masterauth $PASSWORD"
  # Replicas are known by name: pod IPs change when pods move.
  echo "replica-announce-ip $ME"
  if [ "$PRIMARY" != "$ME" ]; then echo "replicaof $PRIMARY 6379"; fi
} > "$CONF_DIR/redis.conf"
exec redis-server "$CONF_DIR/redis.conf"
