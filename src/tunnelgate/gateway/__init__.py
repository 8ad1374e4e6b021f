"""The gateway: public HTTP edge, /connect, tunnel registry and sessions."""
