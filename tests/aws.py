"""AWS for the tests: moto's server mode on 127.0.0.1, reached through boto3's normal endpoint setting.

The code under test makes the very calls it makes against a real account; only
the endpoint differs. Credentials are dummies set for the test process and its
children; nothing leaves the loopback interface.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from shoal.testing import free_port

__all__ = ["AWS_ENV", "MotoServer", "moto_server"]

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class MotoServer:
    """A running moto server: its endpoint URL and the environment a client process needs."""

    endpoint_url: str

    @property
    def env(self) -> dict[str, str]:
        """Dummy credentials, the region and the endpoint, for a child process."""
        return {**AWS_ENV, "AWS_ENDPOINT_URL": self.endpoint_url}

    def client(self, service: str):  # type: ignore[no-untyped-def]
        """A boto3 client of ``service`` pointed at this server."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
            region_name="us-east-1",
        ).client(service, endpoint_url=self.endpoint_url)


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    """Start moto's threaded server on a free loopback port; stop it afterwards."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    try:
        yield MotoServer(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
