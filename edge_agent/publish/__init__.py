"""Publishing to the plant: payload schemas, the SQLite outbox and the MQTT publisher."""
