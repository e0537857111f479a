#!/usr/bin/env bash
# Re-record every capture in captures/ from real peers on 127.0.0.1.
#
#   sudo captures/scripts/record.sh [OUTDIR]      (default OUTDIR: captures/)
#
# Needs: root (or CAP_NET_RAW for tcpdump), tcpdump, mosquitto 2.0.x with mosquitto_pub,
# mosquitto_sub, mosquitto_passwd, mosquitto_ctrl and the dynamic security plugin, and the
# project venv (.venv, paho-mqtt 2.x) for the Python peers.
#
# Every broker listens on 127.0.0.1 only, on a port that is free when the script runs: 1883 for
# the "standard port" captures if it is free (else a random free port, with a warning), 18830-18929
# for the non-standard-port capture, a random free port for the WebSocket one. Each capture gets
# its own broker (temp config, persistence off) and its own `tcpdump -i lo -U --immediate-mode`
# filtered on the broker port; tcpdump is started before the clients and stopped with SIGINT
# after a pause so the last packets are flushed. Every process started here is stopped by pid
# (trap on EXIT), and the temp directory is removed. captures.json is rewritten with the ports used.
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CAPS=$(dirname "$SCRIPTS")
ROOT=$(dirname "$CAPS")
PY=${PYTHON:-$ROOT/.venv/bin/python}
OUT=$(mkdir -p "${1:-$CAPS}" && cd "${1:-$CAPS}" && pwd)
DYNSEC_SO=${DYNSEC_SO:-/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so}
WORK=$(mktemp -d /tmp/qosinspect-record.XXXXXX)
chmod 755 "$WORK"
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto: "$WORK"   # mosquitto drops root privileges to this user
fi

PIDS=()
BROKER_PID=""
TCPDUMP_PID=""
cleanup() {
    # Only our own still-running background jobs (never a pid that was already reaped).
    local p
    for p in $(jobs -p); do
        kill "$p" 2>/dev/null || true
    done
    for p in $(jobs -p); do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "record.sh: $*" >&2; }

port_is_free() {
    "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

random_free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_listening() {  # port
    local i
    for i in $(seq 1 50); do
        if ss -Hltn "sport = :$1" | grep -q LISTEN; then return 0; fi
        sleep 0.1
    done
    log "nothing listening on port $1"; return 1
}

start_broker() {  # name conf port
    mosquitto -c "$2" >"$WORK/$1.mosquitto.out" 2>&1 &
    BROKER_PID=$!
    PIDS+=("$BROKER_PID")
    wait_listening "$3" || { cat "$WORK/$1.mosquitto.out" >&2; return 1; }
}

stop_broker() {
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
}

start_capture() {  # name port
    tcpdump -i lo -U --immediate-mode -Z root -w "$WORK/$1.pcap" "tcp port $2" 2>"$WORK/$1.tcpdump.err" &
    TCPDUMP_PID=$!
    PIDS+=("$TCPDUMP_PID")
    local i
    for i in $(seq 1 50); do
        grep -q "listening on" "$WORK/$1.tcpdump.err" 2>/dev/null && break
        sleep 0.1
    done
    sleep 0.3
}

stop_capture() {  # name
    sleep 1.5    # let the final ACK/FIN packets reach tcpdump before SIGINT
    kill -INT "$TCPDUMP_PID" 2>/dev/null || true
    wait "$TCPDUMP_PID" 2>/dev/null || true
    cp "$WORK/$1.pcap" "$OUT/$1.pcap"
    chmod 644 "$OUT/$1.pcap"
    log "wrote $OUT/$1.pcap ($(stat -c %s "$OUT/$1.pcap") bytes)"
}

write_conf() {  # file port [extra lines...]
    local f=$1 port=$2
    shift 2
    {
        echo "per_listener_settings false"
        echo "listener $port 127.0.0.1"
        echo "persistence false"
        echo "log_dest stdout"
        echo "log_type all"
        for l in "$@"; do echo "$l"; done
    } >"$f"
}

# Dynamic security: users alice/admin, alice may publish/subscribe demo/# and r/#, and is denied
# SUBSCRIBE and PUBLISH on secret/# (SUBACK 0x80 in v3.1.1, 0x87 in v5; PUBACK/PUBREC 0x87 in v5).
# Set up before tcpdump starts, so the mosquitto_ctrl traffic is not in the capture.
dynsec_setup() {  # name port
    local c="mosquitto_ctrl -h 127.0.0.1 -p $2 -u admin -P admin-secret dynsec"
    {
        $c createClient alice -p alice-secret
        $c createRole demo
        $c addRoleACL demo publishClientSend 'demo/#' allow 5
        $c addRoleACL demo publishClientSend 'r/#' allow 5
        $c addRoleACL demo subscribePattern 'demo/#' allow 5
        $c addRoleACL demo subscribePattern 'r/#' allow 5
        $c addRoleACL demo subscribePattern 'secret/#' deny 5
        $c addRoleACL demo publishClientSend 'secret/#' deny 5
        $c addClientRole alice demo
    } >"$WORK/$1.ctrl.out" 2>&1
}

dynsec_conf() {  # name port -> path of a config using the dynamic security plugin
    local json="$WORK/$1.dynsec.json"
    mosquitto_ctrl dynsec init "$json" admin admin-secret >/dev/null
    chmod 666 "$json"
    write_conf "$WORK/$1.conf" "$2" "allow_anonymous false" \
        "plugin $DYNSEC_SO" "plugin_opt_config_file $json"
    echo "$WORK/$1.conf"
}

bg() {  # run a client in the background, remember its pid in LAST_PID
    "$@" >>"$WORK/clients.out" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# ---------------------------------------------------------------------------------------------
if port_is_free 1883; then STD_PORT=1883; else STD_PORT=$(random_free_port); log "WARNING: 1883 busy, using $STD_PORT"; fi
ALT_PORT=""
for _ in $(seq 1 50); do
    p=$((18830 + RANDOM % 100))
    if [ "$p" != "$STD_PORT" ] && port_is_free "$p"; then ALT_PORT=$p; break; fi
done
[ -n "$ALT_PORT" ] || ALT_PORT=$(random_free_port)
WS_PORT=$(random_free_port)
WS_AUX_PORT=$(random_free_port)
while [ "$WS_AUX_PORT" = "$WS_PORT" ]; do WS_AUX_PORT=$(random_free_port); done
log "ports: standard=$STD_PORT non-standard=$ALT_PORT websocket=$WS_PORT (aux plain listener $WS_AUX_PORT)"

mosquitto_passwd -c -b "$WORK/passwd" alice alice-secret
chmod 644 "$WORK/passwd"

# 1 and 2: MQTT 3.1.1 / 3.1 with username+password, QoS 0/1/2, retained, unsubscribe, disconnect.
record_v3() {  # name protocol(mqttv311|mqttv31) tag
    local name=$1 proto=$2 tag=$3 port=$STD_PORT
    write_conf "$WORK/$name.conf" "$port" "allow_anonymous false" "password_file $WORK/passwd"
    start_broker "$name" "$WORK/$name.conf" "$port"
    start_capture "$name" "$port"
    local A=(-h 127.0.0.1 -p "$port" -V "$proto" -u alice -P alice-secret)
    bg mosquitto_sub "${A[@]}" -i "sub-$tag" -q 2 -t 'demo/#' -v -C 7 -W 20
    local sub=$LAST_PID
    sleep 0.7
    printf 'hello qos0 #1\nhello qos0 #2\n' | mosquitto_pub "${A[@]}" -i "pub-$tag-q0" -q 0 -t demo/q0 -l
    printf 'hello qos1 #1\nhello qos1 #2\n' | mosquitto_pub "${A[@]}" -i "pub-$tag-q1" -q 1 -t demo/q1 -l
    printf 'hello qos2 #1\nhello qos2 #2\n' | mosquitto_pub "${A[@]}" -i "pub-$tag-q2" -q 2 -t demo/q2 -l
    mosquitto_pub "${A[@]}" -i "pub-$tag-ret" -q 1 -r -t demo/retained -m 'retained at qos 1'
    wait "$sub"
    # Late subscriber: gets the retained message (RETAIN=1), then UNSUBSCRIBE, DISCONNECT after 1 s.
    mosquitto_sub "${A[@]}" -i "unsub-$tag" -q 1 -t 'demo/#' -U 'demo/#' -v -W 1 >>"$WORK/clients.out" 2>&1 || true
    # Clear the retained message (zero-length retained PUBLISH).
    mosquitto_pub "${A[@]}" -i "pub-$tag-clr" -q 0 -r -n -t demo/retained
    # Wrong password: CONNACK return code 5 (not authorized).
    mosquitto_pub -h 127.0.0.1 -p "$port" -V "$proto" -u alice -P wrong-password -i "pub-$tag-bad" \
        -q 0 -t demo/q0 -m 'never sent' 2>/dev/null || true
    stop_capture "$name"
    stop_broker
}
record_v3 mosquitto-v311-qos012 mqttv311 v311
record_v3 mosquitto-v31-qos012 mqttv31 v31

# 3: MQTT 5 properties, topic alias, will, subscription options, SUBACK 0x87, PUBACK/PUBREC 0x87.
record_v5() {
    local name=mosquitto-v5-props port=$STD_PORT conf
    conf=$(dynsec_conf "$name" "$port")
    start_broker "$name" "$conf" "$port"
    dynsec_setup "$name" "$port"
    start_capture "$name" "$port"
    local A=(-h 127.0.0.1 -p "$port" -V mqttv5 -u alice -P alice-secret)
    bg mosquitto_sub "${A[@]}" -i sub5 -q 2 -t 'demo/#' -t 'secret/x' -v --retain-as-published \
        -D connect session-expiry-interval 30 -D connect receive-maximum 10 \
        -D connect user-property client sub5 -D subscribe user-property sk sv -C 8 -W 20
    local sub=$LAST_PID
    sleep 0.7
    # Will: a client with a will (and will properties) that dies without DISCONNECT.
    bg mosquitto_sub "${A[@]}" -i willer5 -t demo/none \
        --will-topic demo/will --will-payload 'willer5 vanished' --will-qos 1 --will-retain \
        -D will content-type text/plain -D will user-property wk wv \
        -D will message-expiry-interval 120 -D will payload-format-indicator 1
    local willer=$LAST_PID
    sleep 0.5
    kill -KILL "$willer"
    wait "$willer" 2>/dev/null || true
    sleep 0.3
    # Topic alias 1 on every PUBLISH of one connection: first carries the topic, the rest an empty one.
    printf 'alias first\nalias second\nalias third\n' | mosquitto_pub "${A[@]}" -i pub5-alias -q 1 \
        -t demo/v5/alias -l -D publish topic-alias 1 -D publish user-property k v \
        -D publish message-expiry-interval 60 -D publish content-type text/plain \
        -D publish response-topic r/t -D publish correlation-data corr-1234
    mosquitto_pub "${A[@]}" -i pub5-q2 -q 2 -t demo/v5/q2 -m 'qos 2 with properties' \
        -D publish payload-format-indicator 1 -D publish user-property a 1 -D publish user-property b 2
    mosquitto_pub "${A[@]}" -i pub5-q0 -q 0 -t demo/v5/q0 -m 'qos 0 v5'
    mosquitto_pub "${A[@]}" -i pub5-ret -q 1 -r -t demo/v5/retained -m 'retained v5'
    mosquitto_pub "${A[@]}" -i pub5-deny1 -q 1 -t secret/x -m 'denied qos1' 2>/dev/null || true
    mosquitto_pub "${A[@]}" -i pub5-deny2 -q 2 -t secret/y -m 'denied qos2' 2>/dev/null || true
    mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv5 -u alice -P wrong-password -i pub5-badpw \
        -q 0 -t demo/v5/q0 -m 'never sent' 2>/dev/null || true
    mosquitto_pub "${A[@]}" -i pub5-disc -q 0 -t demo/v5/bye -m 'bye' \
        -D disconnect user-property why done -D disconnect session-expiry-interval 0
    wait "$sub"
    mosquitto_sub "${A[@]}" -i unsub5 -t 'demo/#' -U 'demo/#' -U 'demo/never' \
        -D unsubscribe user-property uk uv -W 1 >>"$WORK/clients.out" 2>&1 || true
    stop_capture "$name"
    stop_broker
}
record_v5

# 4: paho-mqtt 2.x, MQTT 3.1.1 and 5, persistent sessions with queued QoS 1/2 messages.
name=paho-v311-v5
write_conf "$WORK/$name.conf" "$STD_PORT" "allow_anonymous true"
start_broker "$name" "$WORK/$name.conf" "$STD_PORT"
start_capture "$name" "$STD_PORT"
"$PY" "$SCRIPTS/paho_session.py" "$STD_PORT"
stop_capture "$name"
stop_broker

# 5: MQTT 3.1.1 on a non-standard port; SUBACK with failure return code 0x80 (dynsec deny).
record_alt() {
    local name=mosquitto-nonstandard-port port=$ALT_PORT conf
    conf=$(dynsec_conf "$name" "$port")
    start_broker "$name" "$conf" "$port"
    dynsec_setup "$name" "$port"
    start_capture "$name" "$port"
    local A=(-h 127.0.0.1 -p "$port" -V mqttv311 -u alice -P alice-secret)
    bg mosquitto_sub "${A[@]}" -i sub-alt -q 1 -t 'demo/#' -t 'secret/x' -v -C 3 -W 20
    local sub=$LAST_PID
    sleep 0.7
    mosquitto_pub "${A[@]}" -i pub-alt-q0 -q 0 -t demo/alt/q0 -m "qos 0 on port $port"
    mosquitto_pub "${A[@]}" -i pub-alt-q1 -q 1 -t demo/alt/q1 -m "qos 1 on port $port"
    mosquitto_pub "${A[@]}" -i pub-alt-q2 -q 2 -t demo/alt/q2 -m "qos 2 on port $port"
    wait "$sub"
    stop_capture "$name"
    stop_broker
}
record_alt

# 6: MQTT over WebSocket. Debian's mosquitto 2.0.11 (libwebsockets 4.1) needs `socket_domain ipv4`
# for the websockets listener to bind 127.0.0.1 only, and refuses to start ("Unable to start any
# listening sockets") when the only listener is a websockets one, hence the extra plain listener.
name=mosquitto-websocket
{
    echo "per_listener_settings false"
    echo "allow_anonymous true"
    echo "persistence false"
    echo "log_dest stdout"
    echo "log_type all"
    echo "listener $WS_AUX_PORT 127.0.0.1"
    echo "listener $WS_PORT 127.0.0.1"
    echo "protocol websockets"
    echo "socket_domain ipv4"
} >"$WORK/$name.conf"
start_broker "$name" "$WORK/$name.conf" "$WS_PORT"
start_capture "$name" "$WS_PORT"
"$PY" "$SCRIPTS/ws_client.py" "$WS_PORT"
stop_capture "$name"
stop_broker

# 7: session resumption with redelivery (DUP=1, PUBREL resend) and a DUP=1 publisher.
name=mosquitto-redelivery
write_conf "$WORK/$name.conf" "$STD_PORT" "allow_anonymous true"
start_broker "$name" "$WORK/$name.conf" "$STD_PORT"
start_capture "$name" "$STD_PORT"
"$PY" "$SCRIPTS/redelivery.py" "$STD_PORT"
stop_capture "$name"
stop_broker

# ---------------------------------------------------------------------------------------------
STD_PORT=$STD_PORT ALT_PORT=$ALT_PORT WS_PORT=$WS_PORT "$PY" - "$OUT/captures.json" <<'EOF'
import json, os, sys
std, alt, ws = (int(os.environ[k]) for k in ("STD_PORT", "ALT_PORT", "WS_PORT"))
caps = [
    ("mosquitto-v311-qos012.pcap", [std], False, [4],
     "mosquitto_sub/mosquitto_pub 2.0.11, MQTT 3.1.1, username/password, QoS 0/1/2 PUBLISH with all "
     "acks, retained message (RETAIN=1 to a late subscriber), zero-length retained PUBLISH that clears "
     "it, SUBSCRIBE/UNSUBSCRIBE, DISCONNECT, CONNACK return code 5 for a wrong password"),
    ("mosquitto-v31-qos012.pcap", [std], False, [3],
     "Same scenario as mosquitto-v311-qos012 with MQTT 3.1 (protocol name MQIsdp, level 3)"),
    ("mosquitto-v5-props.pcap", [std], False, [5],
     "mosquitto_sub/mosquitto_pub 2.0.11, MQTT 5: CONNECT/PUBLISH/SUBSCRIBE/UNSUBSCRIBE/DISCONNECT "
     "properties (user properties, message expiry, content type, response topic, correlation data, "
     "session expiry, receive maximum, payload format), topic alias reused with an empty topic, "
     "will with will properties published after the client is killed, retain-as-published, "
     "SUBACK 0x87 (dynsec deny), PUBACK/PUBREC 0x87 for a denied publish, CONNACK 0x87 "
     "(not authorized: wrong password, as mosquitto+dynsec answers), UNSUBACK 0x11 (no subscription existed)"),
    ("paho-v311-v5.pcap", [std], False, [4, 5],
     "paho-mqtt 2.x (CallbackAPIVersion.VERSION2) publisher and subscriber, MQTT 3.1.1 and 5, QoS 0/1/2; "
     "persistent sessions (clean session 0 / clean start 0 + session expiry): QoS 1/2 messages queued "
     "while the subscriber is away are delivered after it reconnects with session present = 1; "
     "v5 subscription options (No Local, Retain As Published, Retain Handling 2) and subscription ids"),
    ("mosquitto-nonstandard-port.pcap", [alt], False, [4],
     f"MQTT 3.1.1 (mosquitto_sub/pub) on port {alt} instead of 1883; QoS 0/1/2; SUBACK with "
     "failure return code 0x80 (dynsec deny); needs -d tcp.port==PORT,mqtt in tshark"),
    ("mosquitto-websocket.pcap", [ws], True, [4, 5],
     "MQTT 3.1.1 and 5 over WebSocket (paho-mqtt transport=websockets, path /mqtt, subprotocol mqtt) to "
     "a mosquitto websockets listener; HTTP Upgrade, masked client frames; QoS 0/1/2"),
    ("mosquitto-redelivery.pcap", [std], False, [4, 5],
     "Raw-socket peers (captures/scripts/redelivery.py), MQTT 3.1.1 and 5: a persistent subscriber leaves "
     "QoS 1/2 messages unacknowledged and aborts (RST); on resumption (session present = 1) mosquitto "
     "resends them with DUP=1 and resends PUBREL for the QoS 2 message already PUBRECed; a publisher "
     "sends the same packet id twice (second DUP=1) at QoS 1 (delivered twice) and QoS 2 (delivered once)"),
]
out = [{"file": f, "ports": p, "websocket": w, "versions": v, "description": d} for f, p, w, v, d in caps]
# Keep the entries of captures made elsewhere (the generator's gen-*, record_tls.sh's).
mine = {e["file"] for e in out}
if os.path.exists(sys.argv[1]):
    out += [e for e in json.load(open(sys.argv[1])) if e["file"] not in mine]
with open(sys.argv[1], "w") as fh:
    json.dump(out, fh, indent=2)
    fh.write("\n")
EOF
log "wrote $OUT/captures.json"

# 8: MQTT over TLS with its key log (a script of its own, so it can be re-made alone).
"$SCRIPTS/record_tls.sh" "$OUT"
