# Sourced by bench/mqtt_syscalls.sh and bench/mqtt_latency.sh: a temporary directory $d (removed at exit) and a
# mosquitto on a free loopback port $port (PID $mpid, stopped by mqtt_broker_stop) with room for a backlog.
d=$(mktemp -d /tmp/sluice-mqtt-script-XXXXXX)
trap 'rm -rf "$d"' EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\nmax_inflight_messages 100\n' \
  "$port" > "$d/mosquitto.conf"
mosquitto -c "$d/mosquitto.conf" > "$d/mosquitto.log" 2>&1 & mpid=$!
sleep 0.5

mqtt_broker_stop() {
  kill "$mpid"
  wait "$mpid" 2>/dev/null || true
}
