"""TLS for the grid: a private CA and certificates for Dask's security settings.

``fedjax-grid certs DIR`` writes

  ca.pem / ca.key        the grid's certificate authority (keep ca.key offline)
  node.pem / node.key    a certificate for the scheduler and desktops (signed by the CA)
  client.pem / client.key  the coordinator's certificate

A desktop joins a TLS-only scheduler with
``dask worker tls://HOST:8786 --tls-ca-file ca.pem --tls-cert node.pem --tls-key node.key``;
a worker without a certificate signed by the CA is refused at the handshake,
and all traffic (weights, data, tasks) is encrypted. Private keys are written
with mode 0600. Each CA gets its own name (``fedjax_grid CA <6 hex digits>``), so a
certificate says which ``ca.pem`` it belongs to.

When a TLS connection to a scheduler fails, ``diagnose_tls`` says why in one line: the
scheduler's certificate is not signed by ``grid.tls_dir``'s CA (naming the ``ca.pem``
nearby that did sign it, when there is one), the scheduler refused our client
certificate, or the scheduler does not speak TLS at all.
"""
from __future__ import annotations

import datetime
import ipaddress
import pathlib
import secrets
import socket
import ssl
from typing import Optional

from fedjax_grid.atomic_write import write_atomic
from fedjax_grid.errors import UserError, show_path
from fedjax_grid.names import check_host

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


def create_certificates(directory, hosts=("127.0.0.1", "localhost"), *,
                        ca_name: Optional[str] = None,
                        overwrite: bool = False) -> dict[str, pathlib.Path]:
    """Write a CA and node/client certificates into ``directory``; return their paths.
    ca_name: the CA's common name (default: ``fedjax_grid CA`` and 6 random hex digits)."""
    from cryptography.hazmat.primitives import serialization
    ca_name = ca_name or f"fedjax_grid CA {secrets.token_hex(3)}"
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


def require_certs(directory) -> pathlib.Path:
    """The folder, or a one-line UserError naming the first certificate file it lacks."""
    d = pathlib.Path(directory)
    for f in FILES[:1] + FILES[2:]:
        if not (d / f).is_file():
            raise UserError(f"grid.tls_dir={show_path(d)} lacks {f}: create it with "
                            "`fedjax-grid certs DIR`")
    return d


def client_security(directory):
    """Security for the coordinator's Client (require encryption, verify the CA)."""
    from distributed.security import Security
    d = require_certs(directory)
    return Security(tls_ca_file=str(d / "ca.pem"), tls_client_cert=str(d / "client.pem"),
                    tls_client_key=str(d / "client.key"), require_encryption=True)


def local_cluster_security(directory):
    """Security for an embedded TLS-only LocalCluster (scheduler, workers, client)."""
    from distributed.security import Security
    d = require_certs(directory)
    node, key = str(d / "node.pem"), str(d / "node.key")
    return Security(tls_ca_file=str(d / "ca.pem"), tls_scheduler_cert=node, tls_scheduler_key=key,
                    tls_worker_cert=node, tls_worker_key=key, tls_client_cert=str(d / "client.pem"),
                    tls_client_key=str(d / "client.key"), require_encryption=True)


# ---------------------------------------------------------------- why a TLS connection failed

def _common_name(cert_der_or_pem, field: str = "issuer") -> str:
    """The CN of a certificate's issuer (or subject), '' when it has none."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    data = cert_der_or_pem
    cert = (x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----")
            else x509.load_der_x509_certificate(data))
    names = getattr(cert, field).get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _handshake(host: str, port: int, context: ssl.SSLContext, timeout: float):
    """(peer certificate DER or None, error or None) of one TLS handshake; after it, a
    short read catches an alert the server sends about our client certificate (TLS 1.3)."""
    der = None
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=None) as tls:
                der = tls.getpeercert(binary_form=True)
                tls.settimeout(min(1.0, timeout))
                try:
                    tls.recv(1)
                except (socket.timeout, TimeoutError):
                    pass
                return der, None
    except (ssl.SSLError, OSError) as e:
        return der, e


def _signer_nearby(tls_dir: pathlib.Path, issuer: str) -> Optional[pathlib.Path]:
    """A ca.pem beside grid.tls_dir (in a sibling folder) whose CA is ``issuer``."""
    for ca in sorted(tls_dir.resolve().parent.glob("*/ca.pem"))[:200]:
        try:
            if _common_name(ca.read_bytes(), "subject") == issuer:
                return ca
        except (OSError, ValueError):
            continue
    return None


def diagnose_tls(address: str, tls_dir, timeout: float = 5.0) -> Optional[str]:
    """Why a TLS connection to the scheduler at ``tls://HOST:PORT`` fails with the
    certificates in ``tls_dir`` (one line), or None when a handshake works."""
    from fedjax_grid.errors import show_path
    host, port = address.split("://")[-1].rsplit(":", 1)
    host, d = host.strip("[]"), pathlib.Path(tls_dir)
    context = ssl.create_default_context(cafile=str(d / "ca.pem"))
    context.check_hostname = False
    context.load_cert_chain(str(d / "client.pem"), str(d / "client.key"))
    der, error = _handshake(host, int(port), context, timeout)
    if error is None or (der is not None and not isinstance(error, ssl.SSLError)):
        return None
    ours = show_path(d / "ca.pem")
    if isinstance(error, ssl.SSLCertVerificationError):
        loose = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        loose.check_hostname, loose.verify_mode = False, ssl.CERT_NONE
        loose.load_cert_chain(str(d / "client.pem"), str(d / "client.key"))
        der, _ = _handshake(host, int(port), loose, timeout)
        issuer = _common_name(der) if der else "?"
        signer = _signer_nearby(d, issuer) if der else None
        use = (f"use the folder of {show_path(signer)} as grid.tls_dir" if signer else
               "set grid.tls_dir to the `fedjax-grid certs` folder that made the scheduler's "
               "certificate")
        return (f"the scheduler's TLS certificate at {address} is not trusted: it is signed by "
                f"{issuer!r}, not by the CA in {ours} ({error.verify_message}); allowed: {use}")
    reason = getattr(error, "reason", None) or ""
    if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
                  "UNEXPECTED_EOF_WHILE_READING") or "EOF" in str(error):
        return (f"the scheduler at {address} does not speak TLS ({reason or type(error).__name__});"
                " allowed: its tcp:// address, or start it with --tls-ca-file/--tls-cert/--tls-key")
    if isinstance(error, ssl.SSLError):
        mine = _common_name((d / "client.pem").read_bytes())
        return (f"the scheduler at {address} refused our client certificate "
                f"{show_path(d / 'client.pem')} ({reason or error}): it is signed by {mine!r}, a "
                "CA the scheduler does not trust; allowed: grid.tls_dir = the `fedjax-grid "
                "certs` folder of the scheduler's CA (its ca.pem, client.pem and client.key)")
    return None


def speaks_tls(address: str, timeout: float = 5.0) -> bool:
    """True when the server at ``address`` (any protocol prefix) completes a TLS handshake
    (its certificate unchecked): a tcp:// address given for a TLS-only scheduler."""
    host, port = address.split("://")[-1].rsplit(":", 1)
    loose = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    loose.check_hostname, loose.verify_mode = False, ssl.CERT_NONE
    der, _ = _handshake(host.strip("[]"), int(port), loose, timeout)
    return der is not None
