"""What each holder computes from its own rows, and the slot layout of the encrypted vector.

Every operation reduces a holder's rows to a fixed-size vector of per-cell / per-time-bin sums whose
size depends only on the public spec (cells, time bins, covariates), never on the number of
patients: that is what makes the HE cost flat in n. The holder and the key holder both derive the
layout from (kind, spec), so the key holder never trusts a layout sent with the ciphertexts.

Specs are public JSON: column names, category levels, bin edges, time grid, model coefficients.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchUserError

KINDS = ("counts", "survival", "moments", "cox", "logistic")
# Every segment travels in BFV under the space's (joint) key, so threshold decryption covers every
# ciphertext. Integer segments go in as they are; real-valued ones in fixed point: a holder
# rounds each of its values v to V = round(v 2^FRAC_BITS) and writes V in REAL_DIGITS signed
# digits of base 2^DIGIT_BITS, centred (|digit| <= 2^(DIGIT_BITS-1) = 2^24). Pooled over at most
# 32 holders (nodes.MAX_HOLDERS) a digit's sum stays within 32 x 2^24 = 2^29 < (t - 1)/2, so its
# centred representative mod t is the exact sum; the release checker recomposes
# sum_k digit_k 2^(DIGIT_BITS k) exactly and divides by 2^FRAC_BITS (``decode_reals``).
# Rounding error: at most 2^-(FRAC_BITS+1) per holder and value (<= 1.5e-8 for 32 holders).
# A holder's |v| above MAX_REAL (2^44, 1.8e13) does not fit and is refused before encryption.
FRAC_BITS = 30
DIGIT_BITS = 25
REAL_DIGITS = 3
MAX_REAL = 2.0 ** (DIGIT_BITS * REAL_DIGITS - 1 - FRAC_BITS)
INTEGER_SEGMENTS = {"counts", "at_risk", "events", "n", "d", "n_pos", "cell_holders", "outside",
                    "holders"}
MAX_CELLS = 4096
# Each holder adds, above bit 21 of every at-risk slot, 1 while it still has patients at risk, so
# the key holder can tell how many holders pool each at-risk count. Pooled at-risk counts must
# therefore stay below 2^21, and 32 holders x 2^21 stays far below the plain modulus (~2^30).
AT_RISK_SHIFT = 21
MAX_SURVIVAL_ROWS = (1 << AT_RISK_SHIFT) - 1
MAX_BINS = 20000
MAC_SLOTS = 1  # the last slot of every ciphertext carries the holder's MAC (mac.py)


def tri(p: int) -> int:
    return p * (p + 1) // 2


def _cells(spec: dict) -> int:
    n = 1
    for axis in spec.get("by", []):
        n *= len(axis["levels"]) if "levels" in axis else len(axis["edges"]) - 1
    return n


def layout(kind: str, spec: dict) -> list[tuple[str, int]]:
    """Named segments of the flat slot vector, in order. ``cell_holders`` counts, per cell, the
    holders with rows in it; the last slot counts the holders with any row (each holder puts 1
    there), so the key holder can refuse what only one holder contributed. (Apart from these
    values, every ciphertext keeps its last slot for the holder's MAC: ``chunks``.)"""
    cells = _cells(spec)
    if cells > MAX_CELLS:
        raise WorkbenchUserError(f"{cells} cells is more than the {MAX_CELLS} a secure op allows: "
                                 "group by fewer or coarser columns.", reason="too-many-cells")
    if kind == "counts":
        segs = [("counts", cells)]
    elif kind == "moments":
        segs = [(name, cells) for name in ("n", "s1", "s2", "abs", "top", "top1", "top2")]
    elif kind == "survival":
        bins = int(spec["n_bins"])
        if bins > MAX_BINS:
            raise WorkbenchUserError(f"{bins} time bins exceed {MAX_BINS}: pass a coarser "
                                     "time resolution.", reason="too-many-bins")
        segs = [("at_risk", cells * bins), ("events", cells * bins)]
    elif kind == "cox":
        p, sb = len(spec["covariates"]), cells * int(spec["n_bins"])
        segs = [("n", cells), ("d", sb), ("s0", sb), ("s1", sb * p), ("s2", sb * tri(p)),
                ("d0", sb), ("d1", sb * p), ("d2", sb * tri(p)), ("xsum", p), ("xall", p)]
    elif kind == "logistic":
        p = len(spec["covariates"]) + 1
        segs = [("grad", p), ("hess", tri(p)), ("loglik", 1), ("n", 1), ("n_pos", 1)]
    else:
        raise WorkbenchUserError(f"unknown secure operation kind {kind!r}", reason="bad-request")
    if kind != "logistic":
        # rows in no cell (a missing or undeclared level, a value off the grid): the release
        # checker needs their number for DataSHIELD's subset rule (a subset AND its complement)
        segs += [("cell_holders", cells), ("outside", 1)]
    return segs + [("holders", 1)]


def is_real(name: str) -> bool:
    return name not in INTEGER_SEGMENTS


def slots_of(name: str, size: int) -> int:
    """BFV slots a segment of ``size`` values takes (REAL_DIGITS per real value)."""
    return size * REAL_DIGITS if is_real(name) else size


def sizes(kind: str, spec: dict) -> dict[str, int]:
    """Slots per scheme: everything is BFV (real values in REAL_DIGITS fixed-point digits)."""
    return {"bfv": sum(slots_of(name, size) for name, size in layout(kind, spec))}


def _too_large() -> WorkbenchUserError:
    return WorkbenchUserError(
        f"Contribution refused (value-too-large): a holder's sum exceeds {MAX_REAL:.1e} in "
        "magnitude (or is not finite), beyond the fixed-point encoding of the secure reals; "
        "centre or rescale the column (e.g. thousands of EUR).", reason="value-too-large")


def encode_reals(values) -> np.ndarray:
    """Fixed point: each value as REAL_DIGITS centred base-2^DIGIT_BITS digits of
    round(v 2^FRAC_BITS), least significant first (int64; exact in float64 arithmetic: every
    step scales by a power of two, rounds to an integer or subtracts to a representable one)."""
    v = np.ravel(np.asarray(values, dtype=float))
    if not np.isfinite(v).all() or (len(v) and float(np.max(np.abs(v))) > MAX_REAL):
        raise _too_large()
    scaled = np.rint(np.ldexp(v, FRAC_BITS))
    out = np.empty((len(v), REAL_DIGITS), dtype=np.int64)
    for k in range(REAL_DIGITS - 1):
        high = np.rint(np.ldexp(scaled, -DIGIT_BITS))
        out[:, k] = scaled - np.ldexp(high, DIGIT_BITS)
        scaled = high
    if len(v) and float(np.max(np.abs(scaled))) > 2 ** (DIGIT_BITS - 1):
        raise _too_large()
    out[:, -1] = scaled
    return out.ravel()


def decode_reals(digits) -> np.ndarray:
    """The pooled values from the pooled digit sums (any representatives mod t): each digit
    sum's centred lift, then sum_k digit_k 2^(DIGIT_BITS k) / 2^FRAC_BITS, exact in integers and
    rounded once to float64."""
    from workbench.secure.keys import BFV_PLAIN_MODULUS as t

    d = np.asarray(digits, dtype=np.int64).reshape(-1, REAL_DIGITS)
    d = np.mod(d + t // 2, t) - t // 2
    high = d[:, REAL_DIGITS - 1].copy()  # all digits but the lowest: |high| < 2^(30+25(L-2))
    for k in range(REAL_DIGITS - 2, 0, -1):
        high = (high << DIGIT_BITS) + d[:, k]
    # float(high) is exact below 2^53, so one rounding: high 2^(D-F) + d0 2^-F
    out = np.ldexp(high.astype(float), DIGIT_BITS - FRAC_BITS) + np.ldexp(
        d[:, 0].astype(float), -FRAC_BITS)
    big = np.flatnonzero(np.abs(high) >= 1 << 53)
    for i in big:  # beyond 2^53 (pooled |v| > 2^46): Python integers, then one rounding
        out[i] = ((int(high[i]) << DIGIT_BITS) + int(d[i, 0])) / (1 << FRAC_BITS)
    return out


def pack(kind: str, spec: dict, parts: list) -> dict[str, np.ndarray]:
    segs = layout(kind, spec)
    if len(parts) != len(segs):
        raise AssertionError(f"{kind}: {len(parts)} parts for {len(segs)} segments")
    out = []
    for (name, size), part in zip(segs, parts, strict=True):
        flat = np.ravel(np.asarray(part))
        if flat.size != size:
            raise AssertionError(f"{kind}.{name}: {flat.size} values, layout says {size}")
        out.append(encode_reals(flat) if is_real(name) else flat.astype(np.int64))
    return {"bfv": np.concatenate(out) if out else np.zeros(0, dtype=np.int64)}


def split(kind: str, spec: dict, flats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The named segments of the pooled (decrypted) slots; real ones decoded to float64."""
    out, pos, flat = {}, 0, flats["bfv"]
    for name, size in layout(kind, spec):
        width = slots_of(name, size)
        part = flat[pos:pos + width]
        out[name] = decode_reals(part) if is_real(name) else part
        pos += width
    return out


# -- holder side: rows -> vector -------------------------------------------------------------------
def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name not in frame.columns:
        raise WorkbenchUserError(f"column {name!r} is not in the data (columns: "
                                 f"{', '.join(map(str, frame.columns))}).", reason="no-such-column")
    return frame[name]


def _numeric(frame: pd.DataFrame, name: str) -> np.ndarray:
    col = _column(frame, name)
    try:
        values = col.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        raise WorkbenchUserError(f"column {name!r} must be numeric for this operation.",
                                 reason="bad-column") from None
    if np.isnan(values).any():
        raise WorkbenchUserError(f"column {name!r} has missing values: drop or impute them "
                                 "in the view first.", reason="missing-values")
    return values


def cell_index(frame: pd.DataFrame, spec: dict) -> np.ndarray:
    """Cell number of each row (mixed radix over the spec's ``by`` axes); -1 = in no cell."""
    index = None
    for axis in spec.get("by", []):
        col = _column(frame, axis["column"])
        if "levels" in axis:
            levels = [str(v) for v in axis["levels"]]
            codes_of_unique, uniques = pd.factorize(col, use_na_sentinel=True)
            position = {v: i for i, v in enumerate(levels)}
            lookup = np.array([position.get(str(u), -1) for u in uniques] + [-1], dtype=np.int64)
            codes = lookup[codes_of_unique]  # -1 (missing) picks the trailing -1
            size = len(levels)
        else:
            edges = np.asarray(axis["edges"], dtype=float)
            size = len(edges) - 1
            values = col.to_numpy(dtype=float)
            codes = np.searchsorted(edges, values, side="right") - 1
            codes[values == edges[-1]] = size - 1  # the last bin is closed, as in numpy
            codes[(values < edges[0]) | (values > edges[-1]) | np.isnan(values)] = -1
        codes = np.asarray(codes, dtype=np.int64)
        if index is None:  # the first axis: its codes are the cells
            index = codes
        else:
            index = np.where((index < 0) | (codes < 0), -1, index * size + codes)
    return np.zeros(len(frame), dtype=np.int64) if index is None else index


def _plain_integers(column: pd.Series) -> bool:
    """A NumPy integer column (never missing), not pandas' nullable Int64."""
    return isinstance(column.dtype, np.dtype) and column.dtype.kind in "iu"


def time_bins(frame: pd.DataFrame, spec: dict) -> np.ndarray:
    col = _column(frame, spec["duration_col"])
    if float(spec["resolution"]) == 1.0 and _plain_integers(col):
        # integer days on a daily grid (a NumPy integer column cannot hold NaN): the values are
        # the bins; a negative one is caught where the bins are counted
        return col.to_numpy()
    durations = _numeric(frame, spec["duration_col"])
    if (durations < 0).any():
        raise WorkbenchUserError(f"column {spec['duration_col']!r} has negative durations.",
                                 reason="bad-column")
    bins = np.ceil(durations / float(spec["resolution"]) - 1e-9).astype(np.int64)
    return np.clip(bins, 0, None)


def _events(frame: pd.DataFrame, col: str) -> np.ndarray:
    """0/1 event flags as a NumPy array (bool, or int64 straight from an integer column)."""
    column = _column(frame, col)
    if isinstance(column.dtype, np.dtype) and column.dtype.kind == "b":
        return column.to_numpy()
    if _plain_integers(column):  # one pass: anything but 0 and 1 is > 1 as unsigned
        values = column.to_numpy()
        if len(values) and (values.view(f"u{values.dtype.itemsize}") > 1).any():
            raise WorkbenchUserError(f"column {col!r} must be 0/1 (or boolean).",
                                     reason="bad-column")
        return values
    try:
        values = _numeric(frame, col)
    except WorkbenchUserError as exc:
        if exc.reason != "bad-column":
            raise
        values = np.array([np.nan])
    if not np.isin(values, (0, 1)).all():
        raise WorkbenchUserError(f"column {col!r} must be 0/1 (or boolean).", reason="bad-column")
    return values.astype(bool)


def _censor_at_horizon(bins: np.ndarray, event: np.ndarray, n_bins: int):
    """Administrative censoring at the public horizon: a later time counts as censored in the
    grid's last bin, so the grid (and the result's size) never depends on the data."""
    over = bins >= n_bins
    if over.any():
        bins, event = np.minimum(bins, n_bins - 1), np.where(over, 0, event).astype(event.dtype)
    return bins, event


def holder_vectors(kind: str, spec: dict, frame: pd.DataFrame,
                   cache: dict | None = None) -> dict[str, np.ndarray]:
    """This holder's contribution: one flat integer vector for BFV (reals in fixed point)."""
    n_cells = _cells(spec)
    if spec.get("by"):
        cells = cell_index(frame, spec)
        keep = cells >= 0
        per_cell = np.bincount(cells if keep.all() else cells[keep], minlength=n_cells)
    else:  # one cell holding every row: no per-row cell numbers, every row kept (a view)
        cells, keep = None, slice(None)
        per_cell = np.array([len(frame)])
    parts: list[np.ndarray]
    if kind == "counts":
        parts = [per_cell]
    elif kind == "moments":
        parts = _moments(spec, frame, cells, keep, n_cells)
    elif kind == "survival":
        parts = _survival(spec, frame, cells, keep, n_cells)
    elif kind == "cox":
        parts = _cox(spec, frame, cells, keep, n_cells, cache)
    elif kind == "logistic":
        parts = _logistic(spec, frame[keep])
    else:
        raise WorkbenchUserError(f"unknown secure operation kind {kind!r}", reason="bad-request")
    if kind != "logistic":
        parts += [(per_cell > 0).astype(np.int64), [len(frame) - int(per_cell.sum())]]
    parts.append([1 if per_cell.sum() > 0 else 0])
    return pack(kind, spec, parts)


def _moments(spec, frame, cells, keep, n_cells):
    x = _numeric(frame, spec["column"])[keep]
    c = np.zeros(len(x), dtype=np.int64) if cells is None else cells[keep]
    center = np.asarray(spec.get("center", [0.0] * n_cells), dtype=float)[c]
    z = x - center
    tops = _largest(np.abs(x), c, n_cells, int(spec.get("dominance_n", 1)))
    return [np.bincount(c, minlength=n_cells),
            np.bincount(c, weights=z, minlength=n_cells),
            np.bincount(c, weights=z * z, minlength=n_cells) if spec.get("squares", True)
            else np.zeros(n_cells),
            np.bincount(c, weights=np.abs(x), minlength=n_cells), *tops]


def _largest(ax: np.ndarray, c: np.ndarray, n_cells: int, n: int) -> list[np.ndarray]:
    """Per cell, the sum of this holder's n largest |x| (the (n, k) dominance rule), its
    largest and the sum of its two largest (the p% rule). Pooled over holders these bound the
    pooled values from above, so the key holder's checks are conservative."""
    out = [np.zeros(n_cells) for _ in range(3)]
    if not len(ax):
        return out
    if n_cells == 1:  # one cell: a partial sort is enough
        m = min(max(n, 2), len(ax))
        top = np.sort(np.partition(ax, len(ax) - m)[-m:])[::-1]
        for target, k in zip(out, (n, 1, 2), strict=True):
            target[0] = top[:k].sum()
        return out
    order = np.lexsort((-ax, c))  # by cell, largest |x| first
    cs, sorted_ax = c[order], ax[order]
    starts = np.searchsorted(cs, np.arange(n_cells))
    rank = np.arange(len(cs)) - starts[cs]
    for target, k in zip(out, (n, 1, 2), strict=True):
        np.add.at(target, cs[rank < k], sorted_ax[rank < k])
    return out


def _survival(spec, frame, cells, keep, n_cells):
    n_bins = int(spec["n_bins"])
    bins, event = _censor_at_horizon(time_bins(frame, spec), _events(frame, spec["event_col"]),
                                     n_bins)
    if spec.get("by"):  # rows outside every cell drop out; without groups none do
        if not keep.all():
            bins, event, cells = bins[keep], event[keep], cells[keep]
        idx = cells * n_bins + bins
    else:
        idx = bins
    # One counting pass: slot 2i counts the rows leaving cell-bin i censored, slot 2i+1 the events.
    size = n_cells * n_bins
    code = np.left_shift(idx, 1)  # a new array (idx may be the frame's own column): 2 idx + event
    code += event
    try:
        counts = np.bincount(code, minlength=2 * size)
    except ValueError:  # bincount refuses negative numbers
        raise WorkbenchUserError(f"column {spec['duration_col']!r} has negative durations.",
                                 reason="bad-column") from None
    counts = counts.reshape(n_cells, n_bins, 2)
    events = counts[..., 1]
    # rows leaving each bin (censored + events; two adds beat a sum over an axis of length 2)
    at_risk = np.cumsum((counts[..., 0] + events)[:, ::-1], axis=1)[:, ::-1]
    if at_risk.size and at_risk.max() > MAX_SURVIVAL_ROWS:
        raise WorkbenchUserError(f"more than {MAX_SURVIVAL_ROWS} rows in one survival group: "
                                 "split the analysis by a grouping column.", reason="too-many-rows")
    return [at_risk + ((at_risk > 0).astype(np.int64) << AT_RISK_SHIFT), events]


def _cox_setup(spec, frame, cells, keep, n_cells) -> dict:
    """The beta-independent part of a holder's Cox statistics: covariates, event flags and the
    sparse row -> (stratum, bin) maps. Cached across Newton rounds."""
    from scipy import sparse

    n_bins = int(spec["n_bins"])
    x = np.column_stack([_numeric(frame, c)[keep] for c in spec["covariates"]])
    bins, event = _censor_at_horizon(time_bins(frame, spec),
                                     _events(frame, spec["event_col"]).astype(bool), n_bins)
    bins, event = bins[keep], event[keep]
    if len(bins) and bins.min() < 0:
        raise WorkbenchUserError(f"column {spec['duration_col']!r} has negative durations.",
                                 reason="bad-column")
    idx = bins if cells is None else cells[keep] * n_bins + bins
    size, rows = n_cells * n_bins, len(idx)
    to_bins = sparse.csr_matrix((np.ones(rows), (idx, np.arange(rows))), shape=(size, rows))
    return {"x": x, "event": event, "to_bins": to_bins, "events_to_bins": to_bins[:, event],
            "d": np.bincount(idx[event], minlength=size),
            "n": np.array([rows]) if cells is None else np.bincount(cells[keep],
                                                                       minlength=n_cells),
            "x_events": x[event].sum(axis=0), "x_all": x.sum(axis=0), "n_events": int(event.sum())}


def _cox(spec, frame, cells, keep, n_cells, cache=None):
    key = json.dumps({k: v for k, v in spec.items() if k not in ("beta", "center")},
                     sort_keys=True)
    setup = cache.get(key) if cache is not None else None
    if setup is None:
        setup = _cox_setup(spec, frame, cells, keep, n_cells)
        if cache is not None:
            cache.clear()  # one model at a time
            cache[key] = setup
    n_bins, center = int(spec["n_bins"]), np.asarray(spec["center"], dtype=float)
    p = len(spec["covariates"])
    z = setup["x"] - center
    r = np.exp(z @ np.asarray(spec["beta"], dtype=float))
    iu = np.triu_indices(p)
    # one weighted row per patient: [1, z, z z^T (upper triangle)] * exp(z beta)
    weighted = np.column_stack([np.ones(len(z)), z, z[:, iu[0]] * z[:, iu[1]]]) * r[:, None]
    exits = setup["to_bins"] @ weighted
    ties = setup["events_to_bins"] @ weighted[setup["event"]]
    shaped = exits.reshape(n_cells, n_bins, -1)  # risk sets: reverse cumulative sums per stratum
    risk = np.cumsum(shaped[:, ::-1], axis=1)[:, ::-1].reshape(n_cells * n_bins, -1)
    return [setup["n"], setup["d"], risk[:, 0], risk[:, 1:1 + p], risk[:, 1 + p:],
            ties[:, 0], ties[:, 1:1 + p], ties[:, 1 + p:],
            setup["x_events"] - setup["n_events"] * center,
            setup["x_all"] - len(z) * center]


def _logistic(spec, frame):
    y = _events(frame, spec["outcome_col"]).astype(float)
    x = np.column_stack([np.ones(len(frame))] + [_numeric(frame, c) for c in spec["covariates"]])
    beta = np.asarray(spec["beta"], dtype=float)
    eta = x @ beta
    prob = 1.0 / (1.0 + np.exp(-eta))
    w = prob * (1 - prob)
    iu = np.triu_indices(x.shape[1])
    hess = (x.T * w) @ x
    loglik = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
    return [x.T @ (y - prob), hess[iu], [loglik], [len(y)], [int(y.sum())]]


def data_slots(slots: int) -> int:
    """Values per ciphertext: every ciphertext keeps its last slot for the holder's MAC
    (``mac.py``), whatever the layout."""
    return slots - MAC_SLOTS


def ciphertexts_needed(kind: str, spec: dict, slots: dict[str, int]) -> dict[str, int]:
    return {s: math.ceil(n / data_slots(slots[s])) for s, n in sizes(kind, spec).items()}


def chunks(vector: np.ndarray, slots: int, macs: list) -> list[np.ndarray]:
    """One full slot vector per ciphertext: up to ``slots - 1`` values, zero padding, and the
    MAC in the last slot (``macs``: one per ciphertext)."""
    per = data_slots(slots)
    count = math.ceil(len(vector) / per)
    if len(macs) != count:
        raise AssertionError(f"{len(macs)} MACs for {count} ciphertexts")
    out = []
    for i in range(count):
        full = np.zeros(slots, dtype=vector.dtype if vector.dtype.kind in "iuf" else float)
        part = vector[i * per:(i + 1) * per]
        full[:len(part)] = part
        full[-1] = macs[i]
        out.append(full)
    return out
