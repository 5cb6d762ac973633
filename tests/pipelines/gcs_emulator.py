"""A GCS server for tests, and what Beam's gs:// filesystem needs to use it offline.

The server is gcp-storage-emulator (pure Python, in the dev extra), started in a subprocess on 127.0.0.1 at
a free port, in memory. Beam reaches it through its real GCS client:

- STORAGE_EMULATOR_HOST points google-cloud-storage's Client at the emulator; an anonymous client (no
  credentials) then needs no project and sends no token.
- Beam's GcsIO builds its client from `auth.get_service_credentials` (apache_beam/io/gcp/gcsio.py,
  create_storage_client; apache_beam/internal/gcp/auth.py). That calls google.auth.default(), which without
  credentials probes the GCE metadata server (169.254.169.254: the network) and is retried 4 times with
  2-30 s back-off before Beam gives up and "connects anonymously" (storage.Client.create_anonymous_client).
  `use_emulator` fills Beam's per-process credential cache with that outcome (no credentials), so Beam
  connects anonymously at once and never looks for credentials.
- Every socket connect and name lookup outside loopback in this process is refused and recorded
  (`Offline.attempts`), so a test can assert that nothing tried to leave the machine. gRPC's C core does
  not go through Python's sockets; its calls are sent to a closed loopback port as their proxy instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import pytest

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _is_loopback(host) -> bool:
    return host is None or host in LOOPBACK_HOSTS or str(host).startswith("127.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class Emulator:
    endpoint: str  # http://127.0.0.1:PORT

    def client(self):
        """A google-cloud-storage client of the emulator for the test's own uploads and reads."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": self.endpoint}
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(name)

    def blobs(self, url: str) -> dict:
        """{path relative to `url`: Blob} for every object under the gs:// folder `url`."""
        bucket, prefix = _split(url)
        return {b.name[len(prefix) :]: b for b in self.client().list_blobs(bucket, prefix=prefix)}

    def read(self, url: str) -> bytes:
        return self._blob(url).download_as_bytes()

    def write(self, url: str, data: bytes) -> None:
        self._blob(url).upload_from_string(data)

    def _blob(self, url: str):
        bucket, _, name = url[len("gs://") :].partition("/")
        return self.client().bucket(bucket).blob(name)

    def upload_tree(self, local_dir, url: str) -> None:
        """Every file under `local_dir` to the same relative path under the gs:// folder `url`."""
        bucket, prefix = _split(url)
        target = self.client().bucket(bucket)
        for root, _, names in os.walk(local_dir):
            for name in sorted(names):
                path = os.path.join(root, name)
                target.blob(prefix + os.path.relpath(path, local_dir)).upload_from_filename(path)

    def download_tree(self, url: str, local_dir) -> str:
        """Every object under the gs:// folder `url` into `local_dir` (made); returns `local_dir`."""
        for relative, blob in self.blobs(url).items():
            path = os.path.join(local_dir, relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            blob.download_to_filename(path)
        return str(local_dir)


def _split(url: str) -> tuple[str, str]:
    """gs://bucket/a/b -> ("bucket", "a/b/"): a folder prefix."""
    assert url.startswith("gs://"), url
    bucket, _, prefix = url[len("gs://") :].partition("/")
    return bucket, prefix.rstrip("/") + "/" if prefix else ""


@contextlib.contextmanager
def running_emulator() -> Iterator[Emulator]:
    """gcp-storage-emulator in a subprocess on 127.0.0.1, in memory; stopped on exit."""
    with tempfile.TemporaryFile() as log:
        port = free_port()
        command = [sys.executable, "-m", "gcp_storage_emulator", "start", "--in-memory", "--quiet"]
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        endpoint = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(endpoint, process, log)
            yield Emulator(endpoint)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(endpoint: str, process: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(
                f"the GCS emulator exited ({process.returncode}): {log.read().decode()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(endpoint + "/", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the GCS emulator did not answer on {endpoint} within 30 s")


@dataclasses.dataclass
class Offline:
    """Connections and name lookups outside loopback that were refused."""

    attempts: list = dataclasses.field(default_factory=list)


def use_emulator(monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> Offline:
    """Points this process's GCS clients, Beam's included, at `emulator`, anonymously, and refuses every
    connection outside loopback (see the module docstring). Undone with `monkeypatch`."""
    from apache_beam.internal.gcp import auth

    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
    # gRPC clients (Beam's resource-manager lookup, Dataflow's job API) resolve and connect in C, past the
    # socket guard below: through this proxy, a closed loopback port, they fail at once, resolving nothing.
    monkeypatch.setenv("grpc_proxy", "http://127.0.0.1:9")
    monkeypatch.setattr(auth._Credentials, "_credentials_init", True)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
    offline = Offline()
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def refuse(what):
        offline.attempts.append(what)
        raise OSError(f"test: no network here (tried {what!r})")

    def guarded_connect(sock, address):
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            refuse(address)
        return connect(sock, address)

    def guarded_connect_ex(sock, address):
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            refuse(address)
        return connect_ex(sock, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            refuse(host)
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return offline
