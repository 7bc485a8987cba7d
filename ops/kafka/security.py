"""SASL_SSL with SCRAM-SHA-512 for a local deployment: a private CA, a broker keystore, users.

Everything lives in `<state dir>/security/` (mode 0700):
    ca.pem            the CA certificate clients trust (KAFKA_SSL_CAFILE)
    broker.p12        the brokers' key and certificate (SAN localhost and 127.0.0.1), signed by the CA
    truststore.p12    the CA alone, for the brokers' own connections to each other
    secrets.json      0600: keystore password, the users' passwords and the SCRAM salt
    client.env        0600: the KAFKA_* settings a client needs, to `source` in a shell

Certificates come from the JDK's `keytool` (it ships with every Java that runs Kafka), so no Python
crypto package is needed; passwords reach it through the environment, never its command line.
Users are created when storage is formatted (`--add-scram`), as salted credentials computed here,
so no password appears on a command line either. The controller listener stays PLAINTEXT on the
loopback interface; clients and brokers talk SASL_SSL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.kafka.errors import ToolMissing
from ops.kafka.java import JavaRuntime

MECHANISM = "SCRAM-SHA-512"
CLIENT_USER = "headrace"
BROKER_USER = "headrace-broker"
#: Kafka's own default for SCRAM credentials it creates.
ITERATIONS = 4096
_CA_DNAME = "CN=headrace local CA"
_BROKER_DNAME = "CN=localhost"
_SAN = "SAN=dns:localhost,ip:127.0.0.1"


@dataclass(frozen=True)
class BrokerSecurity:
    """The TLS material and SCRAM users of one deployment (see the module docstring)."""

    directory: Path
    client_password: str = field(repr=False)
    broker_password: str = field(repr=False)
    store_password: str = field(repr=False)
    salt: str = field(repr=False)
    client_user: str = CLIENT_USER

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def client_env(self) -> dict[str, str]:
        """What a Headrace process needs in its environment (engine/settings.py reads it)."""
        from engine.settings import Settings

        secure = Settings(
            security_protocol="SASL_SSL",
            sasl_mechanism=MECHANISM,
            sasl_username=self.client_user,
            sasl_password=self.client_password,
            ssl_cafile=str(self.ca_file),
        )
        return secure.to_env("security_protocol", "sasl_mechanism", "sasl_username", "sasl_password", "ssl_cafile")

    def client_kwargs(self) -> dict[str, Any]:
        """The same, as aiokafka client arguments (the launcher's own readiness checks use them)."""
        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": self.client_user,
            "sasl_plain_password": self.client_password,
            "ssl_context": ssl.create_default_context(cafile=str(self.ca_file)),
        }

    def scram_arguments(self) -> list[str]:
        """`--add-scram` arguments for the storage tool: both users, as salted credentials."""
        out: list[str] = []
        for user, password in ((BROKER_USER, self.broker_password), (self.client_user, self.client_password)):
            salt = base64.b64decode(self.salt)
            salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
            out += [
                "--add-scram",
                f'{MECHANISM}=[name={user},iterations={ITERATIONS},salt="{self.salt}",'
                f'saltedpassword="{base64.b64encode(salted).decode()}"]',
            ]
        return out

    def broker_properties(self) -> dict[str, str]:
        """Properties every node adds for its SASL_SSL listener (the listener itself is in config.py)."""
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_USER}" password="{self.broker_password}";'
        )
        return {
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.directory / "broker.p12"),
            "ssl.keystore.password": self.store_password,
            "ssl.key.password": self.store_password,
            "ssl.truststore.type": "PKCS12",
            "ssl.truststore.location": str(self.directory / "truststore.p12"),
            "ssl.truststore.password": self.store_password,
            "ssl.client.auth": "none",
        }


def load(directory: Path) -> BrokerSecurity | None:
    try:
        raw = json.loads((directory / "secrets.json").read_text())
    except FileNotFoundError:
        return None
    return BrokerSecurity(
        directory=directory,
        client_password=raw["client_password"],
        broker_password=raw["broker_password"],
        store_password=raw["store_password"],
        salt=raw["salt"],
    )


def ensure(directory: Path, java: JavaRuntime) -> BrokerSecurity:
    """The deployment's security material, created on first use."""
    found = load(directory)
    if found is not None and (directory / "broker.p12").exists():
        return found
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    made = BrokerSecurity(
        directory=directory,
        client_password=secrets.token_urlsafe(24),
        broker_password=secrets.token_urlsafe(24),
        store_password=secrets.token_urlsafe(24),
        salt=base64.b64encode(secrets.token_bytes(24)).decode(),
    )
    _make_certificates(directory, _keytool(java), made.store_password)
    _write_private(
        directory / "secrets.json",
        json.dumps(
            {
                "client_password": made.client_password,
                "broker_password": made.broker_password,
                "store_password": made.store_password,
                "salt": made.salt,
            },
            indent=2,
        )
        + "\n",
    )
    _write_private(
        directory / "client.env", "".join(f"export {key}='{value}'\n" for key, value in made.client_env().items())
    )
    return made


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _keytool(java: JavaRuntime) -> Path:
    beside = java.executable.parent / "keytool"
    if beside.is_file():
        return beside
    found = shutil.which("keytool")
    if found is None:
        raise ToolMissing(
            f"keytool (part of every JDK and JRE) is not next to {java.executable} nor on PATH; "
            "it makes the certificates of a SASL_SSL deployment."
        )
    return Path(found)


def _make_certificates(directory: Path, keytool: Path, password: str) -> None:
    env = {**os.environ, "HEADRACE_STOREPASS": password}
    store = ["-storetype", "PKCS12", "-storepass:env", "HEADRACE_STOREPASS"]
    key = ["-keyalg", "EC", "-groupname", "secp256r1", "-validity", "3650"]
    ca, broker = directory / "ca.p12", directory / "broker.p12"
    csr, signed = directory / "broker.csr", directory / "broker.pem"
    steps = [
        ["-genkeypair", "-alias", "ca", "-dname", _CA_DNAME, "-ext", "bc:c", *key, "-keystore", str(ca), *store],
        ["-exportcert", "-rfc", "-alias", "ca", "-file", str(directory / "ca.pem"), "-keystore", str(ca), *store],
        [
            "-genkeypair",
            "-alias",
            "broker",
            "-dname",
            _BROKER_DNAME,
            "-ext",
            _SAN,
            *key,
            "-keystore",
            str(broker),
            *store,
        ],
        ["-certreq", "-alias", "broker", "-file", str(csr), "-keystore", str(broker), *store],
        [
            "-gencert",
            "-alias",
            "ca",
            "-infile",
            str(csr),
            "-outfile",
            str(signed),
            "-rfc",
            "-ext",
            _SAN,
            "-ext",
            "eku=serverAuth,clientAuth",
            "-validity",
            "3650",
            "-keystore",
            str(ca),
            *store,
        ],
        # The reply needs its issuer in the keystore first; then the key's entry gets the chain.
        [
            "-importcert",
            "-noprompt",
            "-alias",
            "ca",
            "-file",
            str(directory / "ca.pem"),
            "-keystore",
            str(broker),
            *store,
        ],
        ["-importcert", "-alias", "broker", "-file", str(signed), "-keystore", str(broker), *store],
        [
            "-importcert",
            "-noprompt",
            "-alias",
            "ca",
            "-file",
            str(directory / "ca.pem"),
            "-keystore",
            str(directory / "truststore.p12"),
            *store,
        ],
    ]
    for argv in steps:
        done = subprocess.run(
            [str(keytool), *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise ToolMissing(f"keytool {argv[0]} failed (exit {done.returncode}): {done.stdout}{done.stderr}".strip())
    csr.unlink(missing_ok=True)
