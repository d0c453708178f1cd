"""Holder nodes: each data holder's store, keys, rules and record behind its own mTLS service.

pki.py (the space CA), config.py (a node's files), enroll.py (holders become nodes), server.py
(the node), client.py and coordinator.py (the gateway's side), rules.py (the holder's own say),
journal.py (the node's hash-chained record), process.py (starting nodes), witness.py (cosigning
the central log's tree heads). See docs/nodes.md.
"""
