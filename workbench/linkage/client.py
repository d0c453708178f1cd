"""The node's side of the linkage service: ``pseudonyms(space, ids)`` turns national ids into
space-wide pseudonyms through the service, which only ever receives blinded group elements;
``send_parts`` is the transport of the CLK routes (``clk.upload_reference``, ``clk.match``).

    from workbench.linkage.client import pseudonyms
    person_ids = pseudonyms(space, frame["national_id"].tolist())

The same id gives the same pseudonym at every holder (it depends only on the id and the
service's key); an id is sent once per call whatever its number of rows; missing ids (None, NaN,
empty text) stay None. Pseudonyms have the format of ``workbench.space.linkage.pseudonym``'s
(24 hex digits), so per-study re-keying (``study_pseudonyms``) applies unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from workbench import linkage
from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.linkage import oprf
from workbench.paths import Space
from workbench.peercred import peer_credentials
from workbench.space.linkage import PSEUDONYM_HEX
from workbench.unixhttp import UnixHTTPConnection

# Domain separation: an OPRF output is turned into a pseudonym and into nothing else.
PSEUDONYM_DOMAIN = b"workbench/linkage/pseudonym/v1\x00"
TIMEOUT = 120.0
RATE_RETRIES = 5  # a rate-limited batch is retried after the service's Retry-After


def pseudonyms(space: Space | str | os.PathLike, ids: Sequence[str | None], *,
               socket: str | os.PathLike | None = None,
               batch: int = linkage.MAX_BATCH) -> list[str | None]:
    """Space-wide pseudonyms for ``ids``, row-aligned (None for a missing id).

    ``space`` is the data space (its ``run/linkage.sock``) or ``socket`` names the service's
    socket. Ids are compared as text (``123`` and ``"123"`` are the same person). Raises
    WorkbenchUserError naming the position of a malformed id (never its value) or saying the
    service is not answering."""
    encoded = [_encode(value, row) for row, value in enumerate(ids)]
    distinct = list(dict.fromkeys(v for v in encoded if v is not None))
    if not distinct:
        return [None] * len(encoded)
    path = _socket_path(space, socket)
    chunks = [distinct[i:i + batch] for i in range(0, len(distinct), batch)]
    found: dict[bytes, str] = {}
    # The next batch is blinded in a thread while the service evaluates this one and this one
    # is finalized (libsodium runs without the GIL): node and service work at the same time.
    with _Session(path) as session, ThreadPoolExecutor(1) as blinder:
        upcoming = blinder.submit(_blind_all, chunks[0])
        for number, chunk in enumerate(chunks):
            blinds = upcoming.result()
            if number + 1 < len(chunks):
                upcoming = blinder.submit(_blind_all, chunks[number + 1])
            evaluated = session.evaluate(b"".join(element for _, element in blinds), len(chunk))
            for value, (r, _), z in zip(chunk, blinds, evaluated, strict=True):
                found[value] = _pseudonym(oprf.finalize(value, r, z))
    return [None if v is None else found[v] for v in encoded]


def send_parts(space: Space | str | os.PathLike, route: str, body: bytes, step: int, *,
               socket: str | os.PathLike | None = None) -> tuple[bytes, dict[str, str]]:
    """POST ``body`` to the service's ``route`` in parts of at most ``step`` bytes
    (``?part=0,1,...&final=0|1``: part 0 starts over, the final part commits an upload or asks
    for the answer; an empty body is one empty final part), over one connection that the
    kernel has shown is the service's (as ``pseudonyms``'). Returns the final part's body and
    response headers. A refusal (HTTP 4xx) raises WorkbenchUserError with the service's reason,
    a fault WorkbenchError; an earlier part's refusal stops the upload there."""
    if step <= 0:
        raise ValueError("a part holds at least one byte")
    parts = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
    with _Session(_socket_path(space, socket)) as session:
        for number, chunk in enumerate(parts):
            final = int(number == len(parts) - 1)
            data, headers = session.post(f"{route}?part={number}&final={final}", chunk)
    return data, headers


def _socket_path(space: Space | str | os.PathLike, socket: str | os.PathLike | None) -> Path:
    return Path(socket) if socket is not None else linkage.socket_path(_space(space))


def _blind_all(chunk: list[bytes]) -> list[tuple[bytes, bytes]]:
    return [oprf.blind(value) for value in chunk]


def _pseudonym(output: bytes) -> str:
    return hashlib.sha256(PSEUDONYM_DOMAIN + output).hexdigest()[:PSEUDONYM_HEX]


def _space(space: Space | str | os.PathLike) -> Space:
    return space if isinstance(space, Space) else Space(Path(space).resolve())


def _encode(value, row: int) -> bytes | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if text in ("", "nan", "<NA>", "NaT", "None"):  # how pandas' missing values print
        return None
    if "\x00" in text:
        raise WorkbenchUserError(f"identifier in row {row} contains a NUL character, which no "
                                 "valid identifier has: clean the source's id column.",
                                 reason="bad-identifier")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise WorkbenchUserError(f"identifier in row {row} is not valid Unicode text: clean the "
                                 "source's id column.", reason="bad-identifier") from None


class _Checked(UnixHTTPConnection):
    """A connection that sends nothing before the kernel (SO_PEERCRED) says who answers: root
    (it binds, then drops), the linkage account or this account. Checked on every connect,
    http.client's reconnections after a closed keep-alive included."""

    def connect(self) -> None:
        super().connect()
        _, uid, _ = peer_credentials(self.sock)
        if uid not in _service_uids():
            self.close()
            raise WorkbenchError(f"{self._path} is served by uid {uid}, not by the linkage "
                                 "service's account: refusing to send it anything")


class _Session:
    """One connection to the service, kept open for every batch of a call."""

    def __init__(self, path: Path):
        self.path = path
        self.conn = _Checked(path, TIMEOUT)

    def __enter__(self):
        try:
            self.conn.connect()
        except OSError as exc:
            raise WorkbenchUserError(
                f"the linkage service is not answering on {self.path} ({exc.strerror or exc}): "
                "start it with 'workbench linkage serve --data-dir DIR'.",
                reason="linkage-unavailable") from None
        return self

    def __exit__(self, *exc) -> None:
        self.conn.close()

    def post(self, route: str, body: bytes) -> tuple[bytes, dict[str, str]]:
        """One request; its body and headers if the service answered 200, else its error."""
        self.conn.request("POST", route, body=body,
                          headers={"Content-Type": "application/octet-stream"})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            reason, message = _error(response.status, data)
            raise (WorkbenchUserError(message, reason=reason) if response.status < 500
                   else WorkbenchError(message))
        return data, dict(response.getheaders())

    def evaluate(self, body: bytes, count: int) -> list[bytes]:
        for _attempt in range(RATE_RETRIES + 1):
            self.conn.request("POST", linkage.EVALUATE, body=body,
                              headers={"Content-Type": "application/octet-stream"})
            response = self.conn.getresponse()
            data = response.read()
            if response.status == 200:
                if len(data) != count * oprf.ELEMENT:
                    raise WorkbenchError("the linkage service answered a batch with the wrong "
                                         "number of elements")
                return [data[i:i + oprf.ELEMENT] for i in range(0, len(data), oprf.ELEMENT)]
            reason, message = _error(response.status, data)
            if reason != "rate-limited":
                raise (WorkbenchUserError(message, reason=reason) if response.status < 500
                       else WorkbenchError(message))
            time.sleep(min(float(response.getheader("Retry-After") or 1), 60.0))
        raise WorkbenchUserError(message, reason=reason)


def _error(status: int, data: bytes) -> tuple[str, str]:
    try:
        error = json.loads(data)["error"]
        return str(error["reason"]), f"linkage service: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return "linkage-error", f"linkage service: HTTP {status}"


def _service_uids() -> set[int]:
    import pwd

    uids = {0, os.getuid()}
    try:
        uids.add(pwd.getpwnam(linkage.ACCOUNT).pw_uid)
    except KeyError:
        pass
    return uids
