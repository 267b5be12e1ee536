"""Certificates, keys and tokens made at test time (Python `cryptography` and
PyJWT), written into a temporary directory: a CA, server and client
certificates signed by it (or by another CA, or expired), API keys with
their hash file, and JWTs signed with RS256 or ES256 keys."""

import datetime
import hashlib
import ipaddress
import pathlib
import tempfile

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

import harness

UTC = datetime.timezone.utc


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_pub(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


class Pki:
    """A directory of PEM files; every path returned is a str."""

    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="pki-", dir=harness.scratch_dir()))
        self.ca_key, self.ca_cert, self.ca = self._ca("ca", "Sluice Test CA")
        self.other_key, self.other_cert, self.other_ca = self._ca("other-ca", "Another CA")

    def _write(self, name, data):
        path = self.dir / name
        path.write_bytes(data)
        return str(path)

    def _ca(self, name, cn):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        path = self._write(f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
        return key, cert, path

    def issue(self, name, cn, uris=(), dns=(), ips=(), server=False, by_other=False,
              expired=False):
        """(cert path, key path) of a certificate for cn with the given SANs."""
        key = ec.generate_private_key(ec.SECP256R1())
        ca_key, ca_cert = (self.other_key, self.other_cert) if by_other else \
            (self.ca_key, self.ca_cert)
        now = datetime.datetime.now(UTC)
        start, end = (now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)) \
            if expired else (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7))
        names = [x509.UniformResourceIdentifier(u) for u in uris] + \
            [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(ca_cert.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(start).not_valid_after(end))
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else \
            x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        return (self._write(f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM)),
                self._write(f"{name}.key", _pem_key(key)))

    def server(self, name="server"):
        return self.issue(name, "localhost", dns=["localhost"], ips=["127.0.0.1"], server=True)

    @staticmethod
    def read(path):
        return pathlib.Path(path).read_bytes()


class Tokens:
    """JWT signing keys (RS256 and ES256) with their public keys on disk,
    and API keys with their hash file."""

    def __init__(self, pki):
        self.pki = pki
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa_pub = pki._write("jwt-rsa.pub.pem", _pem_pub(self.rsa))
        self.ec_pub = pki._write("jwt-ec.pub.pem", _pem_pub(self.ec))
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwt(self, sub, alg="RS256", key=None, ttl=300, **claims):
        now = int(datetime.datetime.now(UTC).timestamp())
        body = {"sub": sub, "iat": now, "exp": now + ttl}
        body.update(claims)
        key = key or (self.rsa if alg == "RS256" else self.ec)
        return jwt.encode(body, _pem_key(key), algorithm=alg)

    def api_keys(self, keys):
        """Writes {principal: key} as a hash file; returns its path."""
        lines = [f"{who} {hashlib.sha256(key.encode()).hexdigest()}" for who, key in keys.items()]
        return self.pki._write("api-keys.txt", ("\n".join(lines) + "\n").encode())
