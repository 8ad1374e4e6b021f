"""Sans-IO TLS pieces: reading a ClientHello before anyone answers it."""
