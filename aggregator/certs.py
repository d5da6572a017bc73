"""Certificates and keys for a deployment: `fedtar certs`.

Writes, with owner-only permissions (0600 files, 0700 folders)::

    OUT/ca.crt, OUT/ca.key            a self-signed CA (keep ca.key offline)
    OUT/server.crt, OUT/server.key    the SuperLink's TLS certificate, signed by the CA,
                                      with a SAN for each --host (DNS names and IPs) and
                                      for loopback (`fedtar server`'s own `flwr` calls)
    OUT/nodes/<site>, <site>.pub      one ECDSA P-384 key pair per site in OpenSSH format
                                      (SuperNode --auth-supernode-private-key; the .pub is
                                      registered at the SuperLink)

Sites receive ca.crt and their own private key; nothing else.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from data_adapters.private_files import write_owner_only


@dataclass
class CertificateSet:
    folder: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    node_keys: dict[str, Path] = field(default_factory=dict)  # site -> private key (public: + ".pub")


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


# The coordinating site's `flwr` CLI reaches its SuperLink over loopback when it listens on every
# interface (host = "0.0.0.0"), so the certificate names loopback too, whatever the sites dial.
LOOPBACK = ("localhost", "127.0.0.1", "::1")


def server_names(hosts: list[str]) -> list[str]:
    """The SuperLink certificate's names: the --host values, then loopback's (once each)."""
    return list(dict.fromkeys([*hosts, *LOOPBACK]))


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in server_names(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def make_certificates(out: str | Path, hosts: list[str], sites: list[str], days: int = 365,
                      organization: str = "FedTAR federation") -> CertificateSet:
    if not hosts:
        raise ValueError("at least one --host (the SuperLink's DNS name or IP address) is needed")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(out, 0o700)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA384()))
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                                            x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
                   .issuer_name(ca_name).public_key(server_key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(_san(hosts), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .sign(ca_key, hashes.SHA384()))
    result = CertificateSet(
        folder=out,
        ca_cert=write_owner_only(out / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM)),
        server_cert=write_owner_only(out / "server.crt", server_cert.public_bytes(serialization.Encoding.PEM)),
        server_key=write_owner_only(out / "server.key", _pem_key(server_key)),
    )
    write_owner_only(out / "ca.key", _pem_key(ca_key))
    for site in sites:
        result.node_keys[site] = make_node_key(out / "nodes" / site)
    return result


def make_node_key(path: str | Path) -> Path:
    """An ECDSA P-384 key pair in OpenSSH format (what `ssh-keygen -t ecdsa -b 384` writes)."""
    path = Path(path)
    key = ec.generate_private_key(ec.SECP384R1())
    write_owner_only(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                           serialization.NoEncryption()))
    write_owner_only(path.with_name(path.name + ".pub"), key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n")
    return path
