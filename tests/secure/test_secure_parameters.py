"""The holders' local reduction: exact sums at the plain modulus' edge, and clear errors for bad
survival columns (the joint key's noise budget at 32 parties and 32 summands:
tests/secure/test_threshold.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.errors import WorkbenchUserError
from workbench.secure import ops
from workbench.secure.nodes import MAX_HOLDERS

tenseal = pytest.importorskip("tenseal")


@pytest.fixture(scope="module")
def parties():
    """Three simulated key parties of a joint key (``threshold_local``)."""
    from workbench.secure import signing
    from workbench.secure.threshold_local import LocalKeyParties

    return LocalKeyParties.generate(signing.ephemeral(["a", "b", "c"])[0])


def _threshold_decrypt(parties, vector) -> np.ndarray:
    from workbench.secure import threshold as th
    from workbench.secure import threshold_node as tn

    (ciphertext,) = tn.pooled_from_sum([vector.serialize()])
    return th.decrypt(ciphertext, [parties.parties[h].partial(ciphertext)
                                   for h in parties.names])


SPEC = {"duration_col": "days", "resolution": 1.0, "n_bins": 10, "event_col": "event", "by": []}


def _survival(frame: pd.DataFrame) -> dict:
    return ops.split("survival", SPEC, ops.holder_vectors("survival", SPEC, frame))


def test_survival_counts_match_a_direct_count():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"days": rng.integers(0, 10, 500), "event": rng.integers(0, 2, 500)})
    values = _survival(frame)
    at_risk = values["at_risk"] & ((1 << ops.AT_RISK_SHIFT) - 1)
    for day in range(10):
        assert at_risk[day] == (frame["days"] >= day).sum()
        assert values["events"][day] == ((frame["days"] == day) & (frame["event"] == 1)).sum()


@pytest.mark.parametrize("days, event, reason, words", [
    ([1, -2, 3], [1, 0, 1], "bad-column", "negative durations"),
    ([1.0, -2.0, 3.0], [1, 0, 1], "bad-column", "negative durations"),
    ([1, 2, 3], [1, 2, 1], "bad-column", "0/1"),
    ([1, 2, 3], [1, -1, 1], "bad-column", "0/1"),
    ([1, 2, 3], [1.0, 0.5, 1.0], "bad-column", "0/1"),
])
def test_bad_survival_columns_get_a_clear_error(days, event, reason, words):
    with pytest.raises(WorkbenchUserError) as err:
        _survival(pd.DataFrame({"days": days, "event": event}))
    assert err.value.reason == reason and words in str(err.value)


def test_durations_past_the_horizon_are_censored_in_its_last_bin():
    values = _survival(pd.DataFrame({"days": [1, 2, 30, 9], "event": [1, 0, 1, 1]}))
    at_risk = values["at_risk"] & ((1 << ops.AT_RISK_SHIFT) - 1)
    # day 30 lies past the 10-day grid: at risk until day 9, then censored (no event)
    assert at_risk[9] == 2 and values["events"][9] == 1 and values["events"].sum() == 2


def test_nullable_integer_columns_are_checked_for_missing_values():
    frame = pd.DataFrame({"days": pd.array([1, None, 3], dtype="Int64"), "event": [1, 0, 1]})
    with pytest.raises(WorkbenchUserError) as err:
        _survival(frame)
    assert err.value.reason == "missing-values"


def _extremes(rng, n: int) -> np.ndarray:
    """Values at the edge of the fixed-point range: +-MAX_REAL, the largest digits (the two
    low digits at +2^24 and -2^24), tiny values and random ones over the whole range."""
    top = ops.MAX_REAL
    low = 2 ** 24 + 2 ** 49  # V = low + k 2^50: the two low centred digits are +2^24
    edge = [top, -top, np.nextafter(top, 0), (low + 2 ** 73) / 2 ** ops.FRAC_BITS,
            -(low + 2 ** 73) / 2 ** ops.FRAC_BITS, 2.0 ** -31, -(2.0 ** -31), 0.5, 0.0]
    return np.concatenate([edge, rng.uniform(-top, top, n - len(edge))])


@pytest.mark.parametrize("sign", [1, -1, 0])
def test_fixed_point_reals_of_32_holders_at_the_extremes_sum_exactly(parties, sign):
    """32 holders, every value at the edge of the range and all of one sign (sign 0: mixed):
    every digit sum stays within (t - 1)/2, so after BFV encryption, addition and decryption the
    recomposed values are exactly the sums of the holders' rounded values: no wrap-around."""
    rng = np.random.default_rng(11 + sign)
    n = (4096 - 1) // ops.REAL_DIGITS
    holders = []
    for _ in range(MAX_HOLDERS):
        v = _extremes(rng, n)
        holders.append(np.abs(v) * sign if sign else v)
    digits = [ops.encode_reals(v) for v in holders]
    assert max(int(np.abs(d).max()) for d in digits) == 2 ** (ops.DIGIT_BITS - 1)
    total, public = None, parties.public_keys().bfv
    for d in digits:
        ct = tenseal.bfv_vector(public, d.tolist())
        total = ct if total is None else total + ct
    decoded = ops.decode_reals(_threshold_decrypt(parties, total)[:len(digits[0])])
    # the exact sums of the rounded values, in Python integers, rounded once to float
    scaled = [[int(x) for x in np.rint(np.ldexp(v, ops.FRAC_BITS))] for v in holders]
    exact = np.array([sum(col) / 2 ** ops.FRAC_BITS for col in zip(*scaled, strict=True)])
    assert np.array_equal(decoded, exact)
    assert np.abs(decoded - np.sum(holders, axis=0)).max() <= \
        MAX_HOLDERS * 2.0 ** -(ops.FRAC_BITS + 1) + 1e-15 * np.abs(exact).max()


@pytest.mark.parametrize("value", [ops.MAX_REAL * (1 + 1e-15), -2 * ops.MAX_REAL, np.inf,
                                   np.nan])
def test_reals_beyond_the_fixed_point_range_are_refused_not_wrapped(value):
    with pytest.raises(WorkbenchUserError) as err:
        ops.encode_reals(np.array([1.0, value]))
    assert err.value.reason == "value-too-large" and "\n" not in str(err.value)


def test_large_values_sum_and_vary_within_the_fixed_point_range():
    """Sums and means carry no sums of squares (which would be ~n x^2 and could exceed the
    fixed-point range, ops.MAX_REAL); the variance round is centred on the pooled mean."""
    from workbench.secure import Federation

    rng = np.random.default_rng(3)
    frames = {h: pd.DataFrame({"cost": rng.normal(1e8, 1e3, 4000)}) for h in ("a", "b", "c")}
    pooled = pd.concat(frames.values())["cost"]
    fed = Federation(frames, min_cell_count=10)
    assert abs(fed.sum("cost") - pooled.sum()) <= 1e-6 + 1e-12 * pooled.abs().sum()
    assert abs(fed.mean("cost") - pooled.mean()) <= 1e-6
    assert abs(fed.var("cost") - pooled.var()) / pooled.var() <= 1e-7


def test_a_variance_without_sums_of_squares_is_refused():
    from workbench.secure import release

    spec = {"by": [], "column": "x", "dominance_n": 2, "squares": False}
    values = {"n": np.array([50.0]), "s1": np.array([1.0]), "s2": np.array([0.0]),
              "abs": np.array([60.0]), "top": np.array([2.0]), "cell_holders": np.array([3.0])}
    with pytest.raises(WorkbenchUserError) as err:
        release.release_moments("var", spec, values, release.thresholds_from({}))
    assert err.value.reason == "malformed-message"
