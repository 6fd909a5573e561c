"""TLS for the grid: a private CA and certificates for Dask's security settings.

``fedjax-grid certs DIR`` writes

  ca.pem / ca.key        the grid's certificate authority (keep ca.key offline)
  node.pem / node.key    a certificate for the scheduler and desktops (signed by the CA)
  client.pem / client.key  the coordinator's certificate

A desktop joins a TLS-only scheduler with
``dask worker tls://HOST:8786 --tls-ca-file ca.pem --tls-cert node.pem --tls-key node.key``;
a worker without a certificate signed by the CA is refused at the handshake,
and all traffic (weights, data, tasks) is encrypted. Private keys are written
with mode 0600.
"""
from __future__ import annotations

import datetime
import ipaddress
import pathlib
import re

from fedjax_grid.atomic_write import write_atomic
from fedjax_grid.errors import UserError, show, show_path

#: One label of a DNS host name (RFC 1123): letters, digits, inner hyphens, <= 63 chars.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_host(host) -> str:
    """``host`` if it is an IP address or a DNS host name, else a one-line ``UserError``
    (no spaces, control characters, wildcards, empty labels such as ``..``)."""
    if isinstance(host, str):
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        name = host[:-1] if host.endswith(".") else host
        if 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split(".")):
            return host
    raise UserError(f"--hosts entry {show(host)} is not a host name or IP address; allowed: "
                    "names like node1.example.org (letters, digits, inner hyphens, dot-separated) "
                    "or addresses like 192.168.1.20")

FILES = ("ca.pem", "ca.key", "node.pem", "node.key", "client.pem", "client.key")


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: pathlib.Path, data: bytes, private: bool = False) -> None:
    write_atomic(path, data, mode=0o600 if private else 0o644)


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject_cn, key, issuer_cn, issuer_key, *, ca: bool, hosts=(), days=825):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False,
                                          encipher_only=False, decipher_only=False), critical=True)
    else:
        names = []
        for h in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                names.append(x509.DNSName(h))
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                   ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def create_certificates(directory, hosts=("127.0.0.1", "localhost"), *, ca_name="fedjax_grid CA",
                        overwrite: bool = False) -> dict[str, pathlib.Path]:
    """Write a CA and node/client certificates into ``directory``; return their paths."""
    from cryptography.hazmat.primitives import serialization
    d = pathlib.Path(directory)
    if not hosts:
        raise UserError("--hosts is empty: give at least one host name or IP address")
    hosts = [check_host(h) for h in hosts]
    existing = [f for f in FILES if (d / f).exists()]
    if existing and not overwrite:
        raise UserError(f"{show_path(d / existing[0])} already exists: refusing to overwrite a grid's "
                        "certificates (remove the folder or choose another)")
    d.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    pem = serialization.Encoding.PEM
    _write(d / "ca.key", _pem_key(ca_key), private=True)
    _write(d / "ca.pem", ca.public_bytes(pem))
    for name in ("node", "client"):
        key = _key()
        cert = _cert(f"fedjax_grid {name}", key, ca_name, ca_key, ca=False, hosts=hosts)
        _write(d / f"{name}.key", _pem_key(key), private=True)
        _write(d / f"{name}.pem", cert.public_bytes(pem))
    return {f: d / f for f in FILES}


def _require(directory) -> pathlib.Path:
    d = pathlib.Path(directory)
    for f in FILES[:1] + FILES[2:]:
        if not (d / f).is_file():
            raise UserError(f"grid.tls_dir={show_path(d)} lacks {f}: create it with "
                            "`fedjax-grid certs DIR`")
    return d


def client_security(directory):
    """Security for the coordinator's Client (require encryption, verify the CA)."""
    from distributed.security import Security
    d = _require(directory)
    return Security(tls_ca_file=str(d / "ca.pem"), tls_client_cert=str(d / "client.pem"),
                    tls_client_key=str(d / "client.key"), require_encryption=True)


def local_cluster_security(directory):
    """Security for an embedded TLS-only LocalCluster (scheduler, workers, client)."""
    from distributed.security import Security
    d = _require(directory)
    node, key = str(d / "node.pem"), str(d / "node.key")
    return Security(tls_ca_file=str(d / "ca.pem"), tls_scheduler_cert=node, tls_scheduler_key=key,
                    tls_worker_cert=node, tls_worker_key=key, tls_client_cert=str(d / "client.pem"),
                    tls_client_key=str(d / "client.key"), require_encryption=True)
