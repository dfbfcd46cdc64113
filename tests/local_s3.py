"""A moto S3 server on 127.0.0.1, for the load test and the test suite: real S3 protocol, no
account, no network. Needs moto[s3], flask and flask-cors (the `test`
extra)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """`python -m moto.server` on `port` (a free one when None), started and waited for.

    A fixed port lets a test kill the server and bring a new one up at the same endpoint.
    Used as a context manager, it is stopped on exit.

    Raises:
        RuntimeError: if the server does not accept connections within `start_timeout_s`.
    """

    def __init__(self, port: int | None = None, start_timeout_s: float = 60):
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + start_timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.time() > deadline:
                    self.kill()
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)

    def aws_environment(self, access_key_id: str, secret_access_key: str) -> dict[str, str]:
        """The AWS_* variables that point boto3, s3fs and Arrow at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": access_key_id,
                "AWS_SECRET_ACCESS_KEY": secret_access_key, "AWS_DEFAULT_REGION": "us-east-1"}

    def stop(self, timeout_s: float = 30) -> None:
        """Shut the server down (SIGTERM) and wait for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL, as storage that vanishes mid-request would; waits for it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
