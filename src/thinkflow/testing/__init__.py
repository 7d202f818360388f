"""Helpers for tests and local runs: real servers on loopback (S3 via moto's server, a model server, a scripted
teacher in `thinkflow.testing.scripted`), free ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from thinkflow import env


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` answers any HTTP status, or fail (also when ``proc`` exits early)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server for {url} exited with code {proc.returncode}")
            try:
                http.get(url)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def stop(proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """Terminate a server process started by a test; kill it when it does not exit within ``timeout``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


S3_ENV = (
    env.AWS_ENDPOINT_URL,
    env.MLFLOW_S3_ENDPOINT_URL,
    env.AWS_ACCESS_KEY_ID,
    env.AWS_SECRET_ACCESS_KEY,
    env.AWS_DEFAULT_REGION,
)


@contextmanager
def s3_server() -> Iterator[str]:
    """Start a real S3 server (moto's, on loopback), point the standard env vars at it, yield its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    saved = {k: os.environ.get(k) for k in S3_ENV}
    try:
        wait_http(url + "/moto-api/", proc=proc)
        os.environ.update(
            AWS_ENDPOINT_URL=url,
            MLFLOW_S3_ENDPOINT_URL=url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def loopback_kube_api(handler: type[BaseHTTPRequestHandler], kubeconfig: Path, user: str = "tester") -> Iterator[Path]:
    """A scripted Kubernetes API (``handler``) on loopback, and a kubeconfig at ``kubeconfig`` that points the
    kubernetes client at it with a bearer token; yields the kubeconfig's path."""
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "loopback", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": user, "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "test", "context": {"cluster": "loopback", "user": user}}],
                "current-context": "test",
            }
        )
    )
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def model_server(
    model_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    port: int | None = None,
    timeout: float = 180.0,
    extra_args: list[str] | None = None,
) -> Iterator[str]:
    """Run ``thinkflow serve-model`` (`thinkflow.data.serve`) in a subprocess on loopback; yield its base URL
    (``…/v1``)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "thinkflow.cli", "serve-model", str(model_dir), "--port", str(port)]
    if name:
        cmd += ["--name", name]
    proc = subprocess.Popen([*cmd, *(extra_args or [])])
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=timeout, proc=proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc, timeout=15)
