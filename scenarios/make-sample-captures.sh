#!/bin/sh
# Re-make the generator's sample captures in captures/ (run from the project root, as root so
# that dumpcap records a real capture on the loopback). Each line is the command listed in
# captures/README.md; each writes CAPTURE and CAPTURE.truth.json (what the clients recorded).
# After a re-make, review the reports against the ground truth and against tshark
# (tests/traffic/test_samples.py, captures/expected/review.py) before writing the expected
# reports with: .venv/bin/python tests/traffic/test_samples.py --write
set -eu
Q=".venv/bin/qosinspect generate --capture-method dumpcap -q"
$Q scenarios/sample-qos0.toml --port 1883 --capture captures/gen-qos0.pcap
$Q scenarios/sample-qos1.toml --port 1883 --capture captures/gen-qos1.pcap
$Q scenarios/sample-qos2.toml --port 1883 --capture captures/gen-qos2.pcap
$Q scenarios/sample-reconnect.toml --port 1883 --capture captures/gen-reconnect.pcap
$Q scenarios/sample-stalled-acks.toml --port 1883 --capture captures/gen-stalled-acks.pcap
$Q scenarios/sample-mqtt5.toml --port 1883 --capture captures/gen-mqtt5.pcap
$Q scenarios/sample-websocket.toml --port 9001 --capture captures/gen-websocket.pcap
$Q scenarios/sample-mixed.toml --port 18830 --capture captures/gen-port-18830.pcap
