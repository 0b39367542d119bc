"""A development certificate authority and signing certificate for Content Credentials.

Why: C2PA signing needs an X.509 chain whose leaf has the extensions c2pa-rs checks (a non-CA
leaf with the digitalSignature key usage and the emailProtection extended key usage, key
identifiers on both certificates), and getting one right with openssl is where first tries fail.
These certificates let anyone try signing and verifying, and let the tests run offline. No one
else trusts them: manifests they sign validate as ``Valid``, and as ``Trusted`` only for a
verifier given ``ca.pem`` as a trust anchor. Production signing needs a certificate from a CA on
the C2PA trust list. The CA's private key is discarded once the signer is issued, so the files
cannot be used to issue more certificates.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from provenance.files import check_new_output, write_bytes_atomic

FILES = {"ca": "ca.pem", "chain": "chain.pem", "key": "signer-key.pem"}


def write_development_certificates(folder: str | Path, name: str = "provenance-suite development signer",
                                   days: int = 365, force: bool = False) -> dict[str, Path]:
    """Write ``ca.pem``, ``chain.pem`` (signer then CA) and ``signer-key.pem`` (mode 0600) to ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    paths = {role: check_new_output(Path(folder) / filename, force) for role, filename in FILES.items()}
    now = datetime.datetime.now(datetime.timezone.utc)

    def subject(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "provenance-suite (development only)")])

    def usage(signs_certificates: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=signs_certificates,
                             crl_sign=signs_certificates, encipher_only=False, decipher_only=False)

    def certificate(common_name: str, public_key, issuer: x509.Name, issuer_key, is_ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(subject(common_name)).issuer_name(issuer)
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
                   .add_extension(usage(is_ca), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
        if not is_ca:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                                            critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, signer_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate(f"{name} CA", ca_key.public_key(), subject(f"{name} CA"), ca_key, is_ca=True)
    signer = certificate(name, signer_key.public_key(), ca.subject, ca_key, is_ca=False)
    pem = serialization.Encoding.PEM
    write_bytes_atomic(paths["ca"], ca.public_bytes(pem))
    write_bytes_atomic(paths["chain"], signer.public_bytes(pem) + ca.public_bytes(pem))
    write_bytes_atomic(paths["key"], signer_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()), mode=0o600)
    return paths
