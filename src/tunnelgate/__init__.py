"""tunnelgate: an internet-facing tunnel gateway and its client."""

__version__ = "0.1.0"
