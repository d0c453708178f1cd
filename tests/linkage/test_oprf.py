"""The OPRF itself: RFC 9497's test vectors and which elements are refused."""

from __future__ import annotations

import pytest

from workbench.linkage import oprf

P = 2**255 - 19
SEED, INFO = bytes([0xA3]) * 32, b"test key"
BLIND = bytes.fromhex("64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706")
# RFC 9497 Appendix A.1.1, OPRF(ristretto255, SHA-512), vectors 1 and 2
VECTORS = [
    (b"\x00",
     "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c",
     "7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e",
     "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3"
     "ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6"),
    (bytes([0x5A]) * 17,
     "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418",
     None,
     "f4a74c9c592497375e796aa837e907b1a045d34306a749db9f34221f7e750cb4"
     "f2a6413a6bf6fa5e19ba6348eb673934a722a7ede2e7621306d18951e7cf2c73"),
]


def test_derive_key_matches_rfc9497():
    assert oprf.derive_key(SEED, INFO).hex() == \
        "5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e"


@pytest.mark.parametrize(("value", "blinded", "evaluated", "output"), VECTORS)
def test_blind_evaluate_finalize_match_rfc9497(value, blinded, evaluated, output):
    key = oprf.derive_key(SEED, INFO)
    r, element = oprf.blind(value, BLIND)
    assert element.hex() == blinded
    z = oprf.evaluate(key, element)
    if evaluated:
        assert z.hex() == evaluated
    assert oprf.finalize(value, r, z).hex() == output


def test_blinding_is_fresh_each_time_and_the_output_is_not():
    key = oprf.new_key()
    (r1, b1), (r2, b2) = oprf.blind(b"NID1"), oprf.blind(b"NID1")
    assert b1 != b2  # what the service sees of the same id differs every time
    assert oprf.finalize(b"NID1", r1, oprf.evaluate(key, b1)) == \
        oprf.finalize(b"NID1", r2, oprf.evaluate(key, b2))


def _invalid_elements() -> dict[str, bytes]:
    valid = oprf.hash_to_group(b"NID1")
    s = int.from_bytes(valid, "little")
    return {
        "identity": bytes(32),
        "top bit set": valid[:31] + bytes([valid[31] | 0x80]),
        "field element >= p": (P + 1).to_bytes(32, "little"),
        "negative field element": (P - s).to_bytes(32, "little"),
        "all ones": b"\xff" * 32,
        "short": valid[:31],
    }


@pytest.mark.parametrize("name", sorted(_invalid_elements()))
def test_invalid_elements_are_refused(name):
    element = _invalid_elements()[name]
    with pytest.raises(oprf.InvalidElement):
        oprf.check_element(element)
    with pytest.raises(oprf.InvalidElement):
        oprf.evaluate(oprf.new_key(), element)
