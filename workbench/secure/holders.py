"""Holder nodes as separate processes, so the holders encrypt in parallel.

Each child (``python -m workbench.secure.holders``) gets one holder's rows (Arrow IPC), the public
contexts, that holder's signing and MAC keys and the holders' round-weight key only; the HE
secret key never reaches it. It encrypts, MACs and signs each round itself. Requests and replies
are ``wire`` frames over its stdin/stdout — the same frames a holder service on another host
would take.
"""

from __future__ import annotations

import fcntl
import io
import subprocess
import sys

import pandas as pd

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.secure import signing, wire
from workbench.secure.keys import PublicKeys
from workbench.secure.nodes import Encrypted, HolderNode


def _to_arrow(frame: pd.DataFrame) -> bytes:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _from_arrow(data: bytes) -> pd.DataFrame:
    import pyarrow as pa

    return pa.ipc.open_stream(data).read_all().to_pandas()


def _reply(out, header: dict, blobs=()) -> None:
    out.write(wire.encode(header, list(blobs)))
    out.flush()


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    header, blobs = wire.read_stream(stdin, max_blob=0xFFFFFFFF)  # the holder's own rows
    from nacl.signing import SigningKey

    signer = signing.Signer(header["name"], SigningKey(blobs[2]),
                            blobs[3], blobs[4])
    node = HolderNode(header["name"], _from_arrow(blobs[1]), PublicKeys.from_bytes(blobs[0]),
                      signer)
    node.keys.bfv  # noqa: B018 - parse the context before the first request
    _reply(stdout, {"ready": True, "secret_key": node.has_secret_key})
    while True:
        try:
            header, _ = wire.read_stream(stdin)
        except wire.WireError:
            return  # the coordinator went away
        if header.get("type") == "stop":
            return
        try:
            out = node.contribute(header["kind"], header["spec"], header["nonce"])
            _reply(stdout, {"per_scheme": out.per_scheme, "fingerprint": out.fingerprint,
                            "envelope": out.envelope}, out.blobs)
        except WorkbenchUserError as exc:
            _reply(stdout, {"error": {"reason": exc.reason, "message": str(exc)}})
        except Exception as exc:  # noqa: BLE001 - reported by type only, never row values
            _reply(stdout, {"error": {"reason": "internal-error", "message": type(exc).__name__}})


PIPE_BYTES = 1 << 20  # Linux's default pipe-max-size


class HolderProcesses:
    """One process per holder; ``contribute`` asks all at once, then collects all replies."""

    def __init__(self, partitions: dict[str, pd.DataFrame], keys: PublicKeys,
                 signers: dict[str, signing.Signer]):
        self.names = list(partitions)
        self.procs: list[subprocess.Popen] = []
        try:
            for name, frame in partitions.items():
                proc = subprocess.Popen([sys.executable, "-m", "workbench.secure.holders"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                self.procs.append(proc)
                # A reply (a KM's 66 KB ciphertext) would not fit the default 64 KB pipe: the
                # holder would wait, mid-write, for the coordinator to read, which reads the
                # holders one after another (measured: 1.1 ms of latency per reply, against 0.15)
                fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
                proc.stdin.write(wire.encode({"name": name},
                                             [keys.to_bytes(), _to_arrow(frame),
                                              bytes(signers[name].key),
                                              signers[name].mac_key_or_refuse(),
                                              signers[name].weight_key_or_refuse()]))
                proc.stdin.flush()
            for proc in self.procs:
                header, _ = wire.read_stream(proc.stdout)
                if header.get("secret_key") is not False:
                    raise WorkbenchError("a holder process reported a secret key")
        except (wire.WireError, OSError):
            self.close()
            raise WorkbenchError("a holder process failed to start") from None

    def contribute(self, kind: str, spec: dict, nonce: str) -> list[Encrypted]:
        request = wire.encode({"type": "contribute", "kind": kind, "spec": spec, "nonce": nonce})
        for proc in self.procs:
            proc.stdin.write(request)
            proc.stdin.flush()
        out, error = [], None
        for name, proc in zip(self.names, self.procs, strict=True):
            header, blobs = wire.read_stream(proc.stdout)
            if "error" in header:
                error = error or header["error"]
                continue
            if header.get("per_scheme") != {"bfv": len(blobs)}:  # every ciphertext is BFV
                error = error or {"reason": "internal-error",
                                  "message": "its contribution's layout does not add up"}
                continue
            out.append(Encrypted(kind, header["fingerprint"], blobs, [name],
                                 header.get("envelope")))
        if error:
            if error["reason"] == "internal-error":
                raise WorkbenchError(f"a holder process failed ({error['message']})")
            raise WorkbenchUserError(error["message"], reason=error["reason"])
        return out

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.stdin.write(wire.encode({"type": "stop"}))
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        self.procs = []


if __name__ == "__main__":
    main()
