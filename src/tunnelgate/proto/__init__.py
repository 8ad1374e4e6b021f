"""The sans-IO tunnel protocol: feed bytes, get events, drain bytes.

Nothing here imports asyncio, sockets or a clock; time, when needed, is passed in.
"""
