"""Beam worker pools on separate "hosts" for tests of the portable runner.

Each host runs Beam's Python worker pool (`python -m apache_beam.runners.worker.worker_pool_main`) in a
working directory of its own. Where this process may create network namespaces (root, `ip` present),
each host is a namespace with its own address on a veth link, and the launcher's host name resolves
there to this side of the link (`/etc/netns/NAME/hosts`, which `ip netns exec` mounts over /etc/hosts),
as the host name of a real launcher would. Elsewhere the hosts are two processes on loopback.

A job names one environment endpoint (`--environment_config`); `WorkerHosts.endpoint` is a small
dispatcher that hands each worker the launcher asks for to the next host in turn (a cluster manager's
part) and records which host started which worker.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
from apache_beam.portability.api import beam_fn_api_pb2_grpc

POOL_PORT = 50123  # inside a namespace every host has its own ports
START_SECONDS = 60


class _Dispatcher(beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolServicer):
    def __init__(self, pools: list[str]) -> None:
        self.stubs = [
            beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(grpc.insecure_channel(p)) for p in pools
        ]
        self.turn = itertools.cycle(range(len(pools)))
        self.lock = threading.Lock()
        self.started: dict[str, int] = {}  # worker id -> host index

    def StartWorker(self, request, context):
        with self.lock:
            host = next(self.turn)
            self.started[request.worker_id] = host
        return self.stubs[host].StartWorker(request)

    def StopWorker(self, request, context):
        return self.stubs[self.started.get(request.worker_id, 0)].StopWorker(request)


def namespaces_available() -> bool:
    """Whether this process can make network namespaces joined by veth links (tried, then removed) and
    give them a hosts file."""
    if os.environ.get("VLCURATE_TEST_HOSTS") == "loopback" or not shutil.which("ip"):
        return False
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return False
    name, here, there = (
        f"vlcprobe{os.getpid()}",
        f"vlcp{os.getpid() % 100000}h",
        f"vlcp{os.getpid() % 100000}n",
    )
    steps = [
        ["netns", "add", name],
        ["link", "add", here, "type", "veth", "peer", "name", there],
        ["link", "set", there, "netns", name],
    ]
    made = all(subprocess.run(["ip", *s], capture_output=True, check=False).returncode == 0 for s in steps)
    subprocess.run(["ip", "link", "del", here], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return made and os.access("/etc", os.W_OK)  # /etc/netns/NAME/hosts names the launcher there


class WorkerHosts:
    """`count` worker hosts (namespaces or loopback processes) and their dispatcher; a context manager."""

    def __init__(self, root: str, count: int = 2, namespaces: bool | None = None) -> None:
        self.root, self.count = root, count
        self.namespaces = namespaces_available() if namespaces is None else namespaces
        self.workdirs = [os.path.join(root, f"host{i}") for i in range(count)]
        self._cleanup = contextlib.ExitStack()
        self._dispatcher: _Dispatcher | None = None
        self.endpoint = ""

    @property
    def started(self) -> dict[str, int]:
        """Worker id -> the index of the host that started it."""
        return dict(self._dispatcher.started) if self._dispatcher else {}

    def __enter__(self) -> WorkerHosts:
        try:
            pools = [self._start_host(i) for i in range(self.count)]
            for pool in pools:
                _wait_for_port(pool)
            self._dispatcher = _Dispatcher(pools)
            server = grpc.server(futures.ThreadPoolExecutor(4))
            beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(self._dispatcher, server)
            port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            self._cleanup.callback(server.stop, 0)
            self.endpoint = f"127.0.0.1:{port}"
        except BaseException:
            self._cleanup.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._cleanup.close()

    def _start_host(self, i: int) -> str:
        """Starts host i's worker pool; returns the address the dispatcher reaches it at."""
        os.makedirs(self.workdirs[i])
        env = {
            **os.environ,
            # The pool starts each worker as `python -c ...`: the interpreter running the tests.
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
            "HF_HUB_OFFLINE": "1",
        }
        command = [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main"]
        if self.namespaces:
            name, _, inside = self._make_namespace(i)
            command = ["ip", "netns", "exec", name, *command, f"--service_port={POOL_PORT}"]
            address = f"{inside}:{POOL_PORT}"
        else:
            port = _free_port()
            command = [*command, f"--service_port={port}"]
            address = f"127.0.0.1:{port}"
        log = open(os.path.join(self.root, f"host{i}.log"), "wb")  # noqa: SIM115 (closed at exit)
        self._cleanup.callback(log.close)
        process = subprocess.Popen(
            command, cwd=self.workdirs[i], env=env, stdout=log, stderr=log, start_new_session=True
        )
        self._cleanup.callback(_stop, process)
        return address

    def _make_namespace(self, i: int) -> tuple[str, str, str]:
        """A namespace joined to this one by a veth link; (name, this side's address, its address)."""
        tag = f"{os.getpid() % 100000}x{i}"
        name, here, there = f"vlc{tag}", f"vlc{tag}h", f"vlc{tag}n"
        subnet = f"10.{200 + os.getpid() % 50}.{i + 1}"
        outside, inside = f"{subnet}.1", f"{subnet}.2"
        hosts_dir = f"/etc/netns/{name}"
        os.makedirs(hosts_dir, exist_ok=True)
        self._cleanup.callback(shutil.rmtree, hosts_dir, True)
        with open(os.path.join(hosts_dir, "hosts"), "w", encoding="utf-8") as fh:
            # Workers dial the launcher by its host name (Beam's ExternalWorkerHandler): here that is the
            # far end of the link.
            launcher = socket.getfqdn()
            fh.write(f"{outside} {launcher}\n" + ("127.0.0.1 localhost\n" if launcher != "localhost" else ""))
        _ip("netns", "add", name)
        self._cleanup.callback(_ip, "netns", "del", name, check=False)
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        self._cleanup.callback(_ip, "link", "del", here, check=False)
        _ip("link", "set", there, "netns", name)
        _ip("addr", "add", f"{outside}/24", "dev", here)
        _ip("link", "set", here, "up")
        for args in (
            ("addr", "add", f"{inside}/24", "dev", there),
            ("link", "set", there, "up"),
            ("link", "set", "lo", "up"),
            ("route", "add", "default", "via", outside),
        ):
            _ip("netns", "exec", name, "ip", *args)
        return name, outside, inside


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], capture_output=True, check=check)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(address: str) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no worker pool listening at {address} after {START_SECONDS}s")


def _stop(process: subprocess.Popen) -> None:
    """Stops a pool and the workers it started (its process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
