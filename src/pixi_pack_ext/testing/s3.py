"""A real S3 endpoint on 127.0.0.1 holding a channel (moto in server mode, filled with boto3).

Needs the ``test`` extra (``moto[server]``, ``boto3``). The bucket is reached at
``http://127.0.0.1:PORT`` path-style, or as ``BUCKET.localhost:PORT`` virtual-host style through
``proxy`` (moto also answers proxied requests and picks the bucket from the Host header; a
``*.localhost`` name does not resolve on every machine, so the proxy stands in for DNS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Credentials for filling the bucket; moto accepts any.
FILL_KEY_ID = "fill-key-id"
FILL_SECRET = "fill-secret"
REGION = "us-east-1"


class S3ChannelServer:
    """``s3://bucket/prefix/<subdir>/<file>`` served by moto, with every file of ``channel_dir`` in it."""

    def __init__(self, channel_dir: Path, bucket: str = "conda-channel", prefix: str = "channel") -> None:
        self.channel_dir = channel_dir
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._server: Any = None

    @property
    def port(self) -> int:
        return int(self._server.get_host_and_port()[1])

    @property
    def endpoint(self) -> str:
        """The path-style endpoint: ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def proxy(self) -> str:
        """The same server as an HTTP proxy (for virtual-host style requests to ``*.localhost``)."""
        return self.endpoint

    @property
    def url(self) -> str:
        """The channel's URL: ``s3://bucket/prefix/``."""
        return f"s3://{self.bucket}/{self.prefix}/"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=FILL_KEY_ID,
            aws_secret_access_key=FILL_SECRET,
        )

    def start(self) -> S3ChannelServer:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        s3 = self.client()
        s3.create_bucket(Bucket=self.bucket)
        for path in sorted(self.channel_dir.rglob("*")):
            if path.is_file():
                key = f"{self.prefix}/{path.relative_to(self.channel_dir).as_posix()}"
                s3.upload_file(str(path), self.bucket, key)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> S3ChannelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
