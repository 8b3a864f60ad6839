#!/usr/bin/env bash
# bench/mqtt_latency.sh SLUICE N RATE QOS [RUNS]: the MQTT source's latency with a live publisher at a modest
# rate: `sluice gen --mqtt` publishes N messages at RATE/s and QOS to a local mosquitto, an mqtt source takes
# them into a null sink with `metrics: { latency: true }`, and the sink's final line gives p50/p99/p999 from
# the message callback (ingest time) to the sink's acknowledgement: what the source's wake-ups of its
# consumer cost in latency. Not the broker's or the publisher's part. Prints one line per run.
set -euo pipefail
bin=$1 n=$2 rate=$3 qos=$4 runs=${5:-1}
. "$(dirname "$0")/mqtt_broker.sh"
cat > "$d/pipeline.yaml" <<Y
pipeline: { name: latency }
metrics: { enabled: false, latency: true }
sources:
  - { name: mq, type: mqtt, urls: "tcp://127.0.0.1:$port", client_id: latency, topics: "#", qos: $qos,
      mqtt_version: "3.1.1" }
sinks:
  - { name: out, type: null, from: mq }
Y
for r in $(seq 1 "$runs"); do
  "$bin" run -c "$d/pipeline.yaml" > "$d/sluice.log" 2>&1 & spid=$!
  for _ in $(seq 1 100); do grep -q "subscribed to" "$d/sluice.log" && break; sleep 0.05; done
  "$bin" gen --mqtt "tcp://127.0.0.1:$port" -n "$n" -r "$rate" --qos "$qos" -d 100 > "$d/gen.log" 2>&1
  sleep 1
  kill -TERM "$spid"
  wait "$spid" || true
  lat=$(grep -a '\[total\]' "$d/sluice.log" | grep -o 'lat p50.*' || echo "no latency line")
  got=$(grep -a '\[total\]' "$d/sluice.log" | grep -o 'out in [0-9.k]*' || true)
  echo "mqtt_latency: run $r rate=$rate qos=$qos n=$n ($got) $lat"
done
mqtt_broker_stop
