"""The only code that awaits sockets: the WebSocket tunnel and the byte relays."""
