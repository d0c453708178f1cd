"""Fuzzy linkage as a service: the linkage unit matches holders' CLKs against a reference index.

Holders whose source has a national id and names upload, at their ingest, one entry per distinct
(person, spelling): the space-wide OPRF pseudonym and the CLK of the name and birth date
(``fuzzy.encode`` with the space's CLK secret, which the linkage unit never holds). A holder whose
source has no national id sends the CLKs of its distinct identities; the unit answers, per CLK,
the pseudonym of the best reference entry at Dice >= its threshold (one-to-one within the
request) or none. The unit sees CLKs and pseudonyms only: never a name, a birth date or an id.

Wire formats (``application/octet-stream``), sent in parts (``?part=0,1,...&final=0|1``; part 0
starts over, the final part commits a reference upload or answers a match):

    POST /v1/clk/reference   n * (12-byte pseudonym + 128-byte CLK)   -> {"entries": n}
    POST /v1/clk/match       n * 128-byte CLK                          -> n * (12-byte pseudonym,
                                                                          all zero = none;
                                                                          uint16 Dice * 10000)
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path

from bitarray import bitarray

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.linkage import client, fuzzy

REFERENCE = "/v1/clk/reference"
MATCH = "/v1/clk/match"
CLK_BYTES = fuzzy.BITS // 8  # 128
KEY_BYTES = 12  # a pseudonym's 24 hex digits
ENTRY = KEY_BYTES + CLK_BYTES
ANSWER = KEY_BYTES + 2
PART = 16_384  # CLKs per request part (2 MiB)
MAX_CLKS = 2_000_000  # CLKs in one upload or match (all parts)
NONE = bytes(KEY_BYTES)
_ACCOUNT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _clk(raw: bytes) -> bitarray:
    clk = bitarray()
    clk.frombytes(raw)
    return clk


# -- the linkage unit's side ---------------------------------------------------------------------
class ReferenceIndex:
    """The reference CLKs and pseudonyms, one file per uploading node account (``<account>.ref``,
    0600 in the service's 0700 directory): all the unit keeps of fuzzy linkage."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(mode=0o700, exist_ok=True)
        self._sets: dict[str, tuple[list[bytes], list[bitarray]]] = {}
        for path in sorted(folder.glob("*.ref")):
            try:
                self._sets[path.stem] = self._parse(path.read_bytes())
            except WorkbenchUserError:
                raise WorkbenchUserError(f"{path} is not a CLK reference file: move it away "
                                         "(that holder uploads again at its next ingest)",
                                         reason="bad-state") from None
        self._combine()

    @staticmethod
    def _parse(body: bytes) -> tuple[list[bytes], list[bitarray]]:
        if len(body) % ENTRY:
            raise WorkbenchUserError(f"a reference upload is a whole number of {ENTRY}-byte "
                                     "entries", reason="bad-batch")
        keys, clks = [], []
        for i in range(0, len(body), ENTRY):
            key, raw = body[i:i + KEY_BYTES], body[i + KEY_BYTES:i + ENTRY]
            if key == NONE or not any(raw):
                raise WorkbenchUserError(
                    f"entry {i // ENTRY} has an all-zero pseudonym or CLK: nothing was kept",
                    reason="invalid-entry")
            keys.append(key)
            clks.append(_clk(raw))
        return keys, clks

    def _combine(self) -> None:
        self.keys = [k for keys, _ in self._sets.values() for k in keys]
        self.clks = [c for _, clks in self._sets.values() for c in clks]

    def replace(self, account: str, body: bytes) -> int:
        """The account's whole reference set becomes ``body`` (written aside, then renamed)."""
        if not _ACCOUNT.match(account):
            raise WorkbenchUserError("this account's name cannot name a reference file",
                                     reason="access-denied")
        parsed = self._parse(body)
        path = self.folder / f"{account}.ref"
        partial = path.with_suffix(".tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
        self._sets[account] = parsed
        self._combine()
        return len(parsed[0])

    def size(self) -> int:
        """Distinct pseudonyms in the index (a count, for the holders' quality reports)."""
        return len(set(self.keys))

    def match(self, query: Sequence[bitarray], threshold: float) -> list[tuple[bytes, float]]:
        """Per query CLK, (pseudonym, Dice) of its match or (NONE, 0.0): every pair at or above
        ``threshold`` (anonlink), the best score per (query, pseudonym) when several holders
        uploaded one person, then greedy one-to-one, best first."""
        if not query or not self.clks:
            return [(NONE, 0.0)] * len(query)
        from anonlink import candidate_generation, similarities

        scores, _, (rows_q, rows_r) = candidate_generation.find_candidate_pairs(
            [list(query), self.clks], similarities.dice_coefficient, threshold)
        best: dict[tuple[int, bytes], float] = {}
        for score, q, r in zip(scores, rows_q, rows_r, strict=True):
            pair = (int(q), self.keys[int(r)])
            if score > best.get(pair, -1.0):
                best[pair] = float(score)
        out = [(NONE, 0.0)] * len(query)
        taken_q: set[int] = set()
        taken_key: set[bytes] = set()
        for (q, key), score in sorted(best.items(), key=lambda item: (-item[1], item[0])):
            if q in taken_q or key in taken_key:
                continue
            taken_q.add(q)
            taken_key.add(key)
            out[q] = (key, score)
        return out


class Parts:
    """Per account, the parts of an upload or match received so far (memory only)."""

    def __init__(self, unit: int, limit: int = MAX_CLKS):
        self.unit, self.limit = unit, limit
        self._pending: dict[str, tuple[int, bytearray]] = {}

    def add(self, account: str, part: int, body: bytes) -> bytearray | None:
        """Keep ``body``; the whole body once the final part is in (the caller says when)."""
        if part == 0:
            self._pending[account] = (0, bytearray())
        expected, buffer = self._pending.get(account, (0, None))
        if buffer is None or part != expected:
            self._pending.pop(account, None)
            raise WorkbenchUserError(f"part {part} came out of order (expected {expected}): "
                                     "start again from part 0", reason="bad-part")
        if (len(buffer) + len(body)) // self.unit > self.limit:
            self._pending.pop(account, None)
            raise WorkbenchUserError(f"more than {self.limit} CLKs in one request: split the "
                                     "source", reason="batch-too-large")
        buffer.extend(body)
        self._pending[account] = (part + 1, buffer)
        return buffer

    def finish(self, account: str) -> bytes:
        _, buffer = self._pending.pop(account)
        return bytes(buffer)


def answer(matches: list[tuple[bytes, float]]) -> bytes:
    return b"".join(key + struct.pack(">H", round(score * 10000)) for key, score in matches)


# -- the node's side -----------------------------------------------------------------------------
def upload_reference(space, pseudonyms: Sequence[str], clks: Sequence[bitarray], *,
                     socket: str | os.PathLike | None = None) -> dict:
    """Replace this node account's entries in the linkage unit's reference index with these
    (pseudonym, CLK) pairs; returns the unit's answer (``entries``)."""
    body = b"".join(bytes.fromhex(p) + clk.tobytes()
                    for p, clk in zip(pseudonyms, clks, strict=True))
    data, _headers = client.send_parts(space, REFERENCE, body, PART * ENTRY, socket=socket)
    return json.loads(data)


def match(space, clks: Sequence[bitarray], *, socket: str | os.PathLike | None = None
          ) -> tuple[list[str | None], list[float | None], dict]:
    """Per CLK the pseudonym the linkage unit matched (None: no reference entry at or above its
    threshold) and its Dice score; plus the unit's facts (threshold, reference size)."""
    body = b"".join(clk.tobytes() for clk in clks)
    data, headers = client.send_parts(space, MATCH, body, PART * CLK_BYTES, socket=socket)
    if len(data) != len(clks) * ANSWER:
        raise WorkbenchError("the linkage unit answered with the wrong number of matches")
    names: list[str | None] = []
    scores: list[float | None] = []
    for i in range(0, len(data), ANSWER):
        key, (score,) = data[i:i + KEY_BYTES], struct.unpack(">H", data[i + KEY_BYTES:i + ANSWER])
        names.append(None if key == NONE else key.hex())
        scores.append(None if key == NONE else score / 10000)
    facts = {"threshold": float(headers.get("X-Threshold", "nan")),
             "reference_persons": int(headers.get("X-Reference-Persons", "0"))}
    return names, scores, facts


# -- the node's records ----------------------------------------------------------------------------
def birth_dates(values: Sequence, fmt: str) -> list[str | None]:
    """Birth dates as ISO text (what ``fuzzy.encode`` hashes as 8 digits, year first), from the
    mapping's ``birth_date_format``: ``iso`` (text or date objects), ``yyyymmdd`` (claims-style
    numbers or text; 0 = none) or ``dmy`` (DD.MM.YYYY). Anything else is a missing date."""
    out: list[str | None] = []
    for value in values:
        if value is None or value != value:
            out.append(None)
            continue
        if hasattr(value, "strftime"):
            out.append(value.strftime("%Y-%m-%d"))
            continue
        text = str(value).strip()
        if fmt == "yyyymmdd":
            digits = text[:-2] if text.endswith(".0") else text
            ok = len(digits) == 8 and digits.isdigit()
            out.append(f"{digits[:4]}-{digits[4:6]}-{digits[6:]}" if ok else None)
        elif fmt == "dmy":
            parts = text.split(".")
            ok = len(parts) == 3 and all(p.isdigit() for p in parts) and len(parts[2]) == 4
            out.append(f"{parts[2]}-{parts[1]:0>2}-{parts[0]:0>2}" if ok else None)
        else:
            digits = "".join(c for c in text if c.isdigit())
            out.append(f"{digits[:4]}-{digits[4:6]}-{digits[6:]}" if len(digits) == 8 else None)
    return out


def score_histogram(scores: Sequence[float | None], threshold: float) -> dict[str, int]:
    """Matched records per Dice band (width 0.05 from the threshold up; "1.00" exact)."""
    edges = []
    low = threshold
    while low < 1.0 - 1e-9:
        edges.append(low)
        low = round(low + 0.05, 10)
    bands = {f"{e:.2f}-{min(e + 0.05, 1.0):.2f}": 0 for e in edges}
    bands["1.00"] = 0
    for score in scores:
        if score is None:
            continue
        if score >= 1.0:
            bands["1.00"] += 1
            continue
        for e in reversed(edges):
            if score >= e - 1e-9:
                bands[f"{e:.2f}-{min(e + 0.05, 1.0):.2f}"] += 1
                break
    return bands
