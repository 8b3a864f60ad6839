#!/usr/bin/env bash
# bench/mqtt_syscalls.sh SLUICE N RATE QOS: futex and sched_yield calls per message in the sluice process tree
# (strace -f -c) while `sluice gen --mqtt` publishes N messages at RATE/s and QoS to a local mosquitto, drained by
# an mqtt source into a null sink. strace slows every call, so batches form more easily than without it: compare
# builds with each other at the same rate, not with the figures of a run without strace.
set -euo pipefail
bin=$1 n=$2 rate=$3 qos=$4
. "$(dirname "$0")/mqtt_broker.sh"
cat > "$d/pipeline.yaml" <<Y
pipeline: { name: syscalls }
metrics: { enabled: false }
sources:
  - { name: mq, type: mqtt, urls: "tcp://127.0.0.1:$port", client_id: syscalls, topics: "#", qos: $qos,
      mqtt_version: "3.1.1" }
sinks:
  - { name: out, type: null, from: mq }
Y
strace -f -c -e trace=futex,sched_yield -o "$d/strace.txt" "$bin" run -c "$d/pipeline.yaml" > "$d/sluice.log" 2>&1 &
spid=$!
sleep 1.5
"$bin" gen --mqtt "tcp://127.0.0.1:$port" -n "$n" -r "$rate" --qos "$qos" -d 100 > "$d/gen.log" 2>&1
sleep "${SLUICE_BENCH_DRAIN_WAIT:-8}" # the traced source is slow: let it drain
pkill -TERM -P "$spid" || true       # the master, child of strace: it drains and exits
wait "$spid" || true
mqtt_broker_stop
got=$(grep -o 'out#0\] took [0-9]*' "$d/sluice.log" | awk '{print $3}')
f=$(awk '$NF == "futex" {print $4}' "$d/strace.txt"); y=$(awk '$NF == "sched_yield" {print $4}' "$d/strace.txt")
python3 -c "g = max(1, ${got:-0}); print(f'mqtt_syscalls: messages={${got:-0}} of $n rate=$rate qos=$qos futex={${f:-0}} sched_yield={${y:-0}} futex_per_msg={${f:-0} / g:.3f} yield_per_msg={${y:-0} / g:.3f}')"
