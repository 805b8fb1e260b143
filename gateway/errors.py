"""The one error tree: every error smsgate raises derives from :class:`SmsgateError`.

Per-package errors are defined next to their code (``drivers.smpp.errors``, ...) and subclass
these roots; this module is the place to import the roots from.
"""

from gateway.codec.errors import CodecError, SmsgateError

__all__ = ["CodecError", "SmsgateError"]
