"""Record linkage without a party that sees identifiers (docs/linkage.md).

A holder's node turns each national id into a space-wide pseudonym with an oblivious PRF run
against the linkage service: the node blinds the id, the service applies its secret key to the
blinded element only, the node unblinds and hashes. The node never holds the linkage key and the
service never sees an id.

- ``oprf``: RFC 9497 OPRF (mode 0, ristretto255-SHA512) on libsodium;
- ``client``: ``pseudonyms(space, ids)``, what a node's ingest calls;
- ``service``: the ``wb-linkage`` service on ``run/linkage.sock`` (``workbench linkage serve``).
- ``fuzzy``, ``clk``: sources without a national id: CLKs (Bloom filters) of name and birth
  date made at the nodes with the space's CLK secret, matched by the same service (the linkage
  unit) against the reference CLKs and pseudonyms the holders with ids uploaded.
"""

from __future__ import annotations

from pathlib import Path

from workbench.paths import Space

ACCOUNT = "wb-linkage"  # the only reader of the OPRF key
EVALUATE = "/v1/evaluate"  # POST n * 32 bytes of blinded elements -> n * 32 bytes evaluated
INFO = "/v1/info"
MAX_BATCH = 4096  # elements per request the service accepts by default (128 KiB)


def socket_path(space: Space) -> Path:
    """The service's Unix socket (0666: SO_PEERCRED decides who may use it)."""
    return space.run / "linkage.sock"


def state_dir(space: Space) -> Path:
    """The service's own directory (0700 wb-linkage): its key and its counters."""
    return space.root / "linkage"
