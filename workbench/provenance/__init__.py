"""Tamper-evident provenance: record kinds, the collector service, its stores, verification and
exports. Writers use ``workbench.provenance.client.ProvenanceClient``; see docs/provenance.md."""
