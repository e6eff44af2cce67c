"""RELIABILITY.md line 6: a key blob declaring an absurd size is refused before SEAL allocates
anything, proven in a subprocess whose address space is capped."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.he

SCRIPT = textwrap.dedent(
    """
    import resource, struct, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    from libcryptorec.he.ckks import CkksClient, CkksEvaluator
    from libcryptorec.he.seal import SealPublicKeys
    from libcryptorec.he.errors import InvalidKeyError
    from libcryptorec.he.layout import DiagonalPlan
    from libcryptorec.he.params import CKKS_FAST_8192 as P
    client = CkksClient(P, DiagonalPlan.for_model(P.slots, 50, 7))
    m = client.public_material()
    # SEAL's header: magic(2) version(2) compression(1) reserved(3) size(8, little endian)
    forged = m.public_key[:8] + struct.pack("<Q", 1 << 40) + m.public_key[16:]
    for key, rot in ((forged, m.rotation_keys), (m.public_key, m.rotation_keys[:8]
                      + struct.pack("<Q", 1 << 40) + m.rotation_keys[16:])):
        try:
            CkksEvaluator(P, SealPublicKeys("ckks", P.name, key, rot, m.rotation_steps))
        except InvalidKeyError as exc:
            print("refused:", str(exc)[:80])
        else:
            sys.exit("accepted a forged key")
    """
)


def test_absurd_declared_key_size_is_refused_under_a_memory_cap() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("refused:") == 2
