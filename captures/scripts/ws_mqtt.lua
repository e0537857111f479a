-- tshark/Wireshark 4.0 helper: hand WebSocket payloads whose negotiated subprotocol
-- (Sec-WebSocket-Protocol) is "mqtt" to the built-in MQTT dissector. Wireshark 4.0's MQTT
-- dissector does not register itself in the "ws.protocol" table, and "ws.port"/"ws.protocol"
-- do not support Decode As, so without this the WebSocket payload stays undissected.
-- Usage: tshark -X lua_script:captures/scripts/ws_mqtt.lua -d tcp.port==PORT,http -r F -Y mqtt
local mqtt = Dissector.get("mqtt")
local t = DissectorTable.get("ws.protocol")
t:add("mqtt", mqtt)
t:add("mqttv3.1", mqtt)
