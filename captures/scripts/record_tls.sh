#!/usr/bin/env bash
# Record captures/mosquitto-tls.pcap and its TLS key log, mosquitto-tls.keylog, from real peers.
#
#   sudo captures/scripts/record_tls.sh [OUTDIR]      (default OUTDIR: captures/)
#
# A self-signed certificate for 127.0.0.1 is made with openssl in a temp directory; mosquitto
# gets a TLS listener on a free port of 127.0.0.1; paho clients (tls_client.py) write the session
# secrets to the key log (Python's SSLContext.keylog_filename). The capture is recorded with
# `tcpdump -i lo -U --immediate-mode` on that port. Every process started here is stopped by pid;
# the temp directory is removed. The entry for mosquitto-tls.pcap in captures.json is added or
# updated (the other entries are kept). record.sh runs this script at its end.
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CAPS=$(dirname "$SCRIPTS")
ROOT=$(dirname "$CAPS")
PY=${PYTHON:-$ROOT/.venv/bin/python}
OUT=$(mkdir -p "${1:-$CAPS}" && cd "${1:-$CAPS}" && pwd)
WORK=$(mktemp -d /tmp/qosinspect-record-tls.XXXXXX)
chmod 755 "$WORK"
BROKER_PID=""
TCPDUMP_PID=""
cleanup() {
    [ -n "$TCPDUMP_PID" ] && kill "$TCPDUMP_PID" 2>/dev/null || true
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "record_tls.sh: $*" >&2; }

PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" \
    2>/dev/null
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    chown -R mosquitto: "$WORK"   # mosquitto drops root privileges to this user
fi
cat >"$WORK/mosquitto.conf" <<CONF
per_listener_settings false
allow_anonymous true
persistence false
listener $PORT 127.0.0.1
certfile $WORK/cert.pem
keyfile $WORK/key.pem
CONF
mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.out" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 50); do
    ss -Hltn "sport = :$PORT" | grep -q LISTEN && break
    sleep 0.1
done
tcpdump -i lo -U --immediate-mode -Z root -w "$WORK/tls.pcap" "tcp port $PORT" 2>"$WORK/tcpdump.err" &
TCPDUMP_PID=$!
for _ in $(seq 1 50); do
    grep -q "listening on" "$WORK/tcpdump.err" 2>/dev/null && break
    sleep 0.1
done
sleep 0.3
"$PY" "$SCRIPTS/tls_client.py" "$PORT" "$WORK/cert.pem" "$WORK/keylog.txt"
sleep 1.5   # let the last FIN/ACK reach tcpdump
kill -INT "$TCPDUMP_PID"; wait "$TCPDUMP_PID" 2>/dev/null || true; TCPDUMP_PID=""
kill "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true; BROKER_PID=""
cp "$WORK/tls.pcap" "$OUT/mosquitto-tls.pcap"
cp "$WORK/keylog.txt" "$OUT/mosquitto-tls.keylog"
chmod 644 "$OUT/mosquitto-tls.pcap" "$OUT/mosquitto-tls.keylog"
log "wrote $OUT/mosquitto-tls.pcap and mosquitto-tls.keylog (port $PORT)"

PORT=$PORT "$PY" - "$OUT/captures.json" <<'PYEOF'
import json, os, sys
path = sys.argv[1]
port = int(os.environ["PORT"])
entries = json.load(open(path)) if os.path.exists(path) else []
entries = [e for e in entries if e["file"] != "mosquitto-tls.pcap"]
entries.append({
    "file": "mosquitto-tls.pcap", "ports": [port], "websocket": False, "versions": [4],
    "tls": True, "keylog": "mosquitto-tls.keylog",
    "description": "MQTT 3.1.1 over TLS 1.3 (paho-mqtt 2.x, captures/scripts/tls_client.py) to a "
                   f"mosquitto TLS listener on port {port}, QoS 0/1/2; the TLS session secrets "
                   "are in mosquitto-tls.keylog (NSS key log format): qosinspect reports the "
                   "connections as encrypted; `qosinspect decode --engine tshark --port PORT "
                   "--tls-keylog captures/mosquitto-tls.keylog` decrypts them"})
with open(path, "w") as fh:
    json.dump(entries, fh, indent=2)
    fh.write("\n")
PYEOF
