"""A holder node's configuration: ``node.json`` in the node's own directory.

    <node dir>/node.json          holder id and where the space's public files are
              tls/node.pem|key    its certificate from the space CA (key 0600)
              keys/               its signing key, MAC key and the holders' round-weight key
              holders/<holder>/   its store (parquet); holders/.study-rekey.key, the key that
                                  turns its pseudonyms into per-study ones (shared by the holders,
                                  not by the operator)
              catalog/            the views and its own datasets
              rules.yaml          the holder's own rules (rules.py)
              journal.jsonl       its hash-chained record (journal.py)
              state.json          newest policy serial seen, today's round counts
              witness/            its witness of the central provenance log: key, last head

The whole directory belongs to the node's account (``wbh-<holder>``), 0700: on one machine no
other service account can read it; at a holder's site it is the node's own disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchUserError

CONFIG = "node.json"


@dataclass(frozen=True)
class NodeConfig:
    root: Path
    holder: str
    ca: Path  # the space CA's certificate
    crl: Path  # the space CA's revocation list
    admins: Path  # the space's admin public keys (the policy's signers)
    public_context: Path  # the HE public contexts (he/public.ctx)

    @classmethod
    def load(cls, root: Path) -> NodeConfig:
        root = Path(root)
        try:
            data = json.loads((root / CONFIG).read_text())
            return cls(root, data["holder"], Path(data["ca"]), Path(data["crl"]),
                       Path(data["admins"]), Path(data["public_context"]))
        except FileNotFoundError:
            raise WorkbenchUserError(f"{root / CONFIG} is missing: enroll the node first "
                                     "('workbench node enroll').", reason="no-node") from None
        except PermissionError:
            raise WorkbenchUserError(f"{root} belongs to the node's own account: run the node "
                                     "as that account (or as root, which drops to it).",
                                     reason="permission-denied") from None
        except (ValueError, KeyError, TypeError):
            raise WorkbenchUserError(f"{root / CONFIG} is not a node configuration; enroll the "
                                     "node again.", reason="bad-node") from None

    def write(self) -> None:
        data = {"holder": self.holder, "ca": str(self.ca), "crl": str(self.crl),
                "admins": str(self.admins), "public_context": str(self.public_context)}
        (self.root / CONFIG).write_text(json.dumps(data, indent=1) + "\n")

    @property
    def cert(self) -> Path:
        return self.root / "tls" / "node.pem"

    @property
    def key(self) -> Path:
        return self.root / "tls" / "node.key"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def witness_dir(self) -> Path:  # its witness of the central log (node/witness.py)
        return self.root / "witness"

    @property
    def rules(self) -> Path:
        return self.root / "rules.yaml"

    @property
    def journal(self) -> Path:
        return self.root / "journal.jsonl"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def signer(self):
        """This holder's signing key, MAC key and the holders' round-weight key."""
        from nacl.signing import SigningKey

        from workbench.secure.signing import Signer

        return Signer(self.holder, SigningKey((self.keys / "signing.key").read_bytes()),
                      (self.keys / "mac.key").read_bytes(),
                      (self.keys / "weights.key").read_bytes())
