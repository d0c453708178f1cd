"""The space's certificate authority: who may speak for which role on the network.

The operator runs a small X.509 CA (``cryptography``). Every party that talks across machines gets
a certificate naming its role and, for a holder node, its holder id:

    subject  CN=<name>, OU=<role>, O=workbench:<space id>
    SAN      DNS:<name>.<role>.workbench          (what TLS checks as the host name)

Roles: ``node`` (one per holder; name = holder id), ``coordinator`` (the gateway),
``aggregator`` and ``collector`` (the provenance cosigner, which asks nodes to witness heads).
Every connection is TLS 1.3 with both sides presenting a certificate of this CA.
A node serves only the coordinator's certificate; the coordinator connects to a node under the
host name ``<holder>.node.workbench``, so TLS itself refuses a reply from any other holder.

Revocation: the CA keeps a signed CRL (``crl.pem``, public). Nodes and the coordinator check the
peer's serial against it on every request, reloading it when the file changes, so a revoked
certificate is refused at once without restarting anything. Rotation is issuing a new
certificate for the same name (``workbench node enroll --rotate``) and revoking the old serial.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from workbench.errors import WorkbenchUserError
from workbench.secure.keys import write_key_file

ROLES = ("node", "coordinator", "aggregator", "collector")
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # a DNS label: holder ids are such
CA_DAYS, LEAF_DAYS = 3650, 397  # a leaf lives about a year (the CA/Browser Forum's limit)


def host_name(role: str, name: str) -> str:
    """The DNS name a certificate is issued for, and the name TLS checks on connect."""
    return f"{name}.{role}.workbench"


@dataclass(frozen=True)
class Identity:
    """What a verified peer certificate says: its role, its name and its serial."""

    role: str
    name: str
    serial: int

    @classmethod
    def of(cls, der: bytes) -> Identity:
        cert = x509.load_der_x509_certificate(der)
        role = _attribute(cert, NameOID.ORGANIZATIONAL_UNIT_NAME)
        name = _attribute(cert, NameOID.COMMON_NAME)
        return cls(role, name, cert.serial_number)


def _attribute(cert: x509.Certificate, oid) -> str:
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Authority:
    """The CA's files in ``folder``: ``ca.pem`` and ``crl.pem`` (public), ``ca.key`` (0600) and
    ``issued.json`` (every certificate issued: serial, role, name, revoked)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @property
    def cert_path(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def crl_path(self) -> Path:
        return self.folder / "crl.pem"

    @property
    def key_path(self) -> Path:
        return self.folder / "ca.key"

    @property
    def ledger_path(self) -> Path:
        return self.folder / "issued.json"

    def exists(self) -> bool:
        return self.cert_path.exists() and self.key_path.exists()

    def create(self, space_id: str) -> None:
        """A new CA (P-256, ten years) and an empty CRL; an existing CA is never replaced."""
        if self.exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o755)  # noqa: S103 - ca.pem and crl.pem are public
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                f"workbench:{space_id}"),
                             x509.NameAttribute(NameOID.COMMON_NAME, "workbench space CA")])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .sign(key, hashes.SHA256()))
        write_key_file(self.key_path, _key_pem(key), 0o600, None)
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        os.chmod(self.cert_path, 0o644)
        self._write_ledger({"space": space_id, "issued": []})
        self._write_crl([])

    def _key(self):
        try:
            return serialization.load_pem_private_key(self.key_path.read_bytes(), None)
        except FileNotFoundError:
            raise WorkbenchUserError(f"{self.key_path} is missing: run 'workbench node enroll' "
                                     "on the space's machine, as root.", reason="no-ca") from None
        except PermissionError:
            raise WorkbenchUserError(f"{self.key_path} is readable by root only: run this as "
                                     "root.", reason="permission-denied") from None

    def _cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def ledger(self) -> dict:
        return json.loads(self.ledger_path.read_text())

    def _write_ledger(self, ledger: dict) -> None:
        tmp = self.ledger_path.with_name(".issued.json.tmp")
        tmp.write_text(json.dumps(ledger, indent=1) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.ledger_path)

    def issue(self, role: str, name: str) -> tuple[bytes, bytes]:
        """A new key and certificate (PEM) for ``name`` in ``role``; recorded in the ledger."""
        if role not in ROLES:
            raise WorkbenchUserError(f"role {role!r} is not one of {', '.join(ROLES)}.",
                                     reason="bad-role")
        if not NAME.match(name):
            raise WorkbenchUserError(f"{name!r} cannot name a certificate: use lowercase letters, "
                                     "digits and '-' (a DNS label).", reason="bad-name")
        ca_key, ca_cert = self._key(), self._cert()
        key = ec.generate_private_key(ec.SECP256R1())
        space = _attribute(ca_cert, NameOID.ORGANIZATION_NAME)
        now = _now()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, space),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                    x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(host_name(role, name))]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        ledger = self.ledger()
        ledger["issued"].append({"serial": str(cert.serial_number), "role": role, "name": name,
                                 "issued": now.isoformat(timespec="seconds"), "revoked": None})
        self._write_ledger(ledger)
        return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)

    def revoke(self, role: str, name: str, serial: int | None = None) -> list[int]:
        """Revoke ``name``'s certificates in ``role`` (all, or the one ``serial``); the CRL is
        rewritten at once. Returns the serials revoked now."""
        ledger = self.ledger()
        now = _now().isoformat(timespec="seconds")
        revoked = []
        for entry in ledger["issued"]:
            if (entry["role"], entry["name"]) == (role, name) and entry["revoked"] is None and (
                    serial is None or int(entry["serial"]) == serial):
                entry["revoked"] = now
                revoked.append(int(entry["serial"]))
        if not revoked:
            raise WorkbenchUserError(f"no valid certificate of {role} {name!r} to revoke; list "
                                     "them with 'workbench node list'.", reason="not-found")
        self._write_ledger(ledger)
        self._write_crl([int(e["serial"]) for e in ledger["issued"] if e["revoked"]])
        return revoked

    def _write_crl(self, serials: list[int]) -> None:
        now = _now()
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self._cert().subject)
                   .last_update(now).next_update(now + dt.timedelta(days=7)))
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now)
                .build())
        crl = builder.sign(self._key(), hashes.SHA256())
        tmp = self.crl_path.with_name(".crl.pem.tmp")
        tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.crl_path)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Revocations:
    """The CA's CRL, re-read when its file changes; a CRL not signed by the CA, or unreadable,
    revokes everything (fail closed)."""

    def __init__(self, crl_path: Path, ca_path: Path):
        self.crl_path, self.ca_path = Path(crl_path), Path(ca_path)
        self._stamp: tuple | None = None
        self._serials: frozenset[int] | None = None

    def serials(self) -> frozenset[int] | None:
        try:
            stat = self.crl_path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if stamp != self._stamp:
                ca = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
                crl = x509.load_pem_x509_crl(self.crl_path.read_bytes())
                if not crl.is_signature_valid(ca.public_key()):
                    raise ValueError("CRL not signed by the space CA")
                self._serials = frozenset(r.serial_number for r in crl)
                self._stamp = stamp
        except (OSError, ValueError):
            self._serials, self._stamp = None, None
        return self._serials

    def check(self, identity: Identity) -> None:
        serials = self.serials()
        if serials is None:
            raise WorkbenchUserError("the space CA's revocation list cannot be read, so no peer "
                                     "is trusted.", reason="no-crl")
        if identity.serial in serials:
            raise WorkbenchUserError(f"the certificate of {identity.role} {identity.name!r} is "
                                     "revoked.", reason="revoked-certificate")


def server_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.3 only, a client certificate of the space CA required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def client_context(ca: Path, cert: Path, key: Path, crl: Path) -> ssl.SSLContext:
    """TLS 1.3 only; the server must present a certificate of the space CA, not revoked by
    ``crl``, for the host name the caller asks for (``host_name(role, name)``). A changed CRL
    needs a new context (``client.NodeSet`` makes one when the file changes)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca))
    ctx.load_verify_locations(cafile=str(crl))
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
