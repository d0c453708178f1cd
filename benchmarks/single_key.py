"""BASELINE ONLY: the single-key secure path the product had before issue 17.

The product has no single key any more: every space's BFV key is a joint key and every aggregate
is threshold-decrypted (``workbench/secure/threshold*.py``). The goals of ``bench_secure`` were
set for the single-key path (one 60-bit prime, decrypted by one key holder), so it is kept here,
and only here, as the baseline the threshold path is measured against:

- ``single_key()``: fresh (public, secret) TenSEAL BFV contexts at one 60-bit prime (SEAL then
  encrypts at that one level: 0.6 ms a ciphertext instead of 1.1 ms; 66 KB a ciphertext);
- ``SingleKeyHolder``: the release checker with every check and rule of the product's, but
  decrypting the pooled sum with that whole secret key instead of combining partials;
- ``federation(partitions, **kw)``: a ``Federation`` on that key holder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.errors import WorkbenchUserError
from workbench.secure import tensealproto
from workbench.secure import threshold_seal as sealio
from workbench.secure.keyholder import KeyHolder
from workbench.secure.keys import BFV_PLAIN_MODULUS, BFV_POLY_DEGREE, PublicKeys, fingerprint_of

COEFF_BITS = [60]  # one prime, no key-switching prime: additions only, 19 bits of noise budget


@dataclass
class SingleKey:
    public: PublicKeys
    secret_bytes: bytes  # a TenSEAL context with the whole secret key

    @property
    def secret(self):
        import tenseal as ts

        return ts.context_from(self.secret_bytes)


def single_key() -> SingleKey:
    """Fresh keys. ``tenseal.context`` always makes relinearisation keys, which SEAL cannot make
    without a key-switching prime, so the keys are made with SEAL's API as TenSEAL ships it and
    written into TenSEAL's context message (parameters, the public part, the secret key)."""
    from tenseal import sealapi

    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.BFV)
    parms.set_poly_modulus_degree(BFV_POLY_DEGREE)
    parms.set_coeff_modulus(sealapi.CoeffModulus.Create(BFV_POLY_DEGREE, COEFF_BITS))
    parms.set_plain_modulus(sealapi.Modulus(BFV_PLAIN_MODULUS))
    context = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
    assert context.parameters_set(), "SEAL refused the baseline's BFV parameters"
    keygen = sealapi.KeyGenerator(context)
    public_key = sealapi.PublicKey()
    keygen.create_public_key(public_key)
    field = tensealproto.field
    public_part = field(1, sealio.save(public_key)) + field(2, 7) + field(3, -1.0)  # auto flags
    public = field(1, sealio.save(parms)) + field(2, public_part)
    secret = public + field(3, field(1, sealio.save(keygen.secret_key())))
    return SingleKey(PublicKeys(public, fingerprint_of(public)), secret)


class SingleKeyHolder(KeyHolder):
    """The release checker with one whole key: it decrypts the pooled sum itself."""

    def __init__(self, keys: SingleKey, **kwargs):
        super().__init__(keys.public, **kwargs)
        self.secret = keys.secret

    def _open(self, header, kind, spec, bfv_blobs, partials, boxes):
        import tenseal as ts

        out = []
        for blob in bfv_blobs:
            try:
                out.append(np.array(ts.bfv_vector_from(self.secret, blob).decrypt(),
                                    dtype=np.int64))
            except (ValueError, RuntimeError, TypeError):
                raise WorkbenchUserError("a ciphertext is malformed or was made with other HE "
                                         "parameters.", reason="malformed-ciphertext") from None
        return out, None


def federation(partitions, **kwargs):
    """A ``Federation`` whose sums one key holder decrypts with the single key."""
    from workbench.secure import Federation

    keys = single_key()
    return Federation(partitions, keyholder=SingleKeyHolder(keys), public_keys=keys.public,
                      **kwargs)
