"""The airlock's callers use the one Unix-socket HTTP client, ``workbench.unixhttp``; this name
is kept for the review modules that import it from here."""

from workbench.unixhttp import UnixHTTP, decode_reply

__all__ = ["UnixHTTP", "decode_reply"]
