"""Local stand-ins for the Google Cloud KMS and Azure Key Vault REST APIs: just the calls
envelope encryption makes, so the engine's GcpKmsKey and AzureKeyVaultKey can be tested over
real HTTP through the official SDKs (no cloud account here; moto serves AWS KMS instead).

- `GcpKmsStandIn`: `POST /v1/{keyName}:encrypt` and `:decrypt` (JSON, base64 fields). Each key
  is its own AES-256-GCM key and the additional authenticated data is checked, so a
  ciphertext of another key or another AAD is refused as Cloud KMS does: 400 INVALID_ARGUMENT.
  An unknown key: 404 NOT_FOUND.
- `KeyVaultStandIn`: `GET /keys/NAME[/VERSION]` (the public JWK: the SDK then wraps locally;
  or 403), `POST .../wrapkey` and `.../unwrapkey` (RSA-OAEP-256, base64url), over HTTPS
  with a certificate made for 127.0.0.1 (the SDK refuses bearer tokens over plain HTTP: the
  test trusts `ca_file`). A request without a bearer token gets Key Vault's 401 challenge;
  any token is accepted. The challenge's resource is the parent "domain" of the request host
  (`https://0.0.1:PORT` for 127.0.0.1:PORT), as Key Vault's `https://vault.azure.net` is of
  `x.vault.azure.net`, so the SDK's challenge-resource check passes without being turned
  off. Another key's ciphertext: 400 BadParameter.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

OAEP_256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.server.app.handle(self, "GET")

    def do_POST(self) -> None:
        self.server.app.handle(self, "POST")

    def reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> dict[str, Any]:
        size = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(size) if size else b""
        return dict(json.loads(raw)) if raw else {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: Any


@contextmanager
def _serve(app: Any, context: ssl.SSLContext | None = None) -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.app = app
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- Google Cloud KMS -------------------------------------------------------------------


class GcpKmsStandIn:
    def __init__(self) -> None:
        self.endpoint = ""
        self._keys: dict[str, AESGCM] = {}

    def create_key(self, name: str) -> str:
        self._keys[name] = AESGCM(AESGCM.generate_key(256))
        return name

    def handle(self, req: _Handler, method: str) -> None:
        path = unquote(urlsplit(req.path).path)
        name, _, verb = path.removeprefix("/v1/").rpartition(":")
        if method != "POST" or verb not in ("encrypt", "decrypt"):
            return _google_error(req, 404, "NOT_FOUND", f"no such method {path}")
        key = self._keys.get(name)
        if key is None:
            return _google_error(req, 404, "NOT_FOUND", f"CryptoKey {name} not found.")
        body = req.body()
        aad = base64.b64decode(body.get("additionalAuthenticatedData", ""))
        if verb == "encrypt":
            nonce = secrets.token_bytes(12)
            sealed = nonce + key.encrypt(nonce, base64.b64decode(body["plaintext"]), aad)
            return req.reply(200, {"name": f"{name}/cryptoKeyVersions/1", "ciphertext": _b64(sealed)})
        sealed = base64.b64decode(body["ciphertext"])
        try:
            plain = key.decrypt(sealed[:12], sealed[12:], aad)
        except (InvalidTag, ValueError):
            return _google_error(
                req, 400, "INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid."
            )
        return req.reply(200, {"plaintext": _b64(plain)})


def _google_error(req: _Handler, code: int, status: str, message: str) -> None:
    req.reply(code, {"error": {"code": code, "message": message, "status": status}})


@contextmanager
def gcp_kms_standin() -> Iterator[GcpKmsStandIn]:
    app = GcpKmsStandIn()
    with _serve(app) as port:
        app.endpoint = f"http://127.0.0.1:{port}"
        yield app


# --- Azure Key Vault --------------------------------------------------------------------


@dataclass
class _KvKey:
    versions: dict[str, rsa.RSAPrivateKey]
    current: str


class KeyVaultStandIn:
    def __init__(self, ca_file: Path) -> None:
        self.ca_file = ca_file
        self.vault_url = ""
        #: False: GET of a key is 403 (an identity without keys/get), so the SDK wraps remotely
        self.keys_readable = True
        self._keys: dict[str, _KvKey] = {}

    def create_key(self, name: str) -> str:
        """A new RSA key, or a new version of `name`: its URL without a version."""
        version = secrets.token_hex(16)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        entry = self._keys.setdefault(name, _KvKey({}, version))
        entry.versions[version] = key
        entry.current = version
        return f"{self.vault_url}/keys/{name}"

    def current_version(self, name: str) -> str:
        return self._keys[name].current

    def handle(self, req: _Handler, method: str) -> None:
        if not req.headers.get("Authorization", "").startswith("Bearer "):
            return self._challenge(req)
        parts = urlsplit(req.path).path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "keys":
            return _kv_error(req, 404, "NotFound", "no such path")
        entry = self._keys.get(parts[1])
        version = parts[2] if len(parts) > 2 and parts[2] not in ("wrapkey", "unwrapkey") else ""
        version = version or (entry.current if entry else "")
        key = entry.versions.get(version) if entry else None
        if key is None:
            return _kv_error(req, 404, "KeyNotFound", f"A key with (name/id) {parts[1]} was not found")
        kid = f"{self.vault_url}/keys/{parts[1]}/{version}"
        op = parts[-1]
        if method == "GET" and not self.keys_readable:
            return _kv_error(req, 403, "Forbidden", "The user does not have keys get permission")
        if method == "GET":
            numbers = key.public_key().public_numbers()
            jwk = {
                "kid": kid,
                "kty": "RSA",
                "key_ops": ["wrapKey", "unwrapKey"],
                "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                "e": _b64url(numbers.e.to_bytes(3, "big")),
            }
            return req.reply(200, {"key": jwk, "attributes": {"enabled": True}})
        body = req.body()
        if body.get("alg") != "RSA-OAEP-256":
            return _kv_error(req, 400, "BadParameter", "unsupported algorithm")
        value = _unb64url(body["value"])
        if op == "wrapkey":
            return req.reply(200, {"kid": kid, "value": _b64url(key.public_key().encrypt(value, OAEP_256))})
        if op == "unwrapkey":
            try:
                plain = key.decrypt(value, OAEP_256)
            except ValueError:
                return _kv_error(req, 400, "BadParameter", "Error while unwrapping the key")
            return req.reply(200, {"kid": kid, "value": _b64url(plain)})
        return _kv_error(req, 404, "NotFound", f"no operation {op}")

    def _challenge(self, req: _Handler) -> None:
        # resource: the parent "domain" of 127.0.0.1:PORT (see the module's docstring)
        host = urlsplit(self.vault_url).netloc.split(".", 1)[1]
        challenge = (
            'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", '
            f'resource="https://{host}"'
        )
        _kv_error(
            req, 401, "Unauthorized", "AKV10000: Request is missing a Bearer", {"WWW-Authenticate": challenge}
        )


def _kv_error(
    req: _Handler, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    req.reply(status, {"error": {"code": code, "message": message}}, headers)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA: (certificate file, key file)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kms stand-in")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "standin.crt", folder / "standin.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@contextmanager
def key_vault_standin(folder: Path) -> Iterator[KeyVaultStandIn]:
    cert_file, key_file = _self_signed(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    app = KeyVaultStandIn(cert_file)
    with _serve(app, context) as port:
        app.vault_url = f"https://127.0.0.1:{port}"
        yield app


class StubCredential:
    """An Azure token credential whose token the stand-in accepts (no identity service here)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("stand-in-token", int(time.time()) + 3600)
