"""Key providers: `local` (development only), `aws` (AWS KMS), `pkcs11` (HSM via PKCS#11).

The aws and pkcs11 modules import their third-party client lazily (through `kms.config.build_provider`),
so a deployment only needs the library of the provider it uses.
"""

from kms.providers.base import EncryptionContext, KeyProvider, canonical_context

__all__ = ["EncryptionContext", "KeyProvider", "canonical_context"]
