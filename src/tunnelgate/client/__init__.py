"""The tunnel client: agent (connect, register, reconnect), local relays, output."""
