"""Why the HE layer refuses something. Every refusal happens before any heavy work."""


class HEError(ValueError):
    """Base class: the request cannot be served as sent."""


class InvalidCiphertextError(HEError):
    """Truncated, foreign, out-of-range or wrongly shaped ciphertext bytes."""


class InvalidKeyError(HEError):
    """Key material that is malformed, of another scheme or parameter set, too large, too weak,
    or secret."""


class CancelledError(Exception):
    """The caller withdrew the request (deadline or cancellation); the work was stopped."""


class InsecureParametersError(HEError):
    """Parameters outside the HomomorphicEncryption.org 128-bit security table."""
