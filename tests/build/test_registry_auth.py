"""The registry check with the user's Docker credentials, against Debian's docker-registry with htpasswd auth.

No Docker engine needed: the test pushes a small image manifest over the registry's HTTP API itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from pipecast.build.registry import manifest_digest
from pipecast.errors import BuildError
from tests.helpers.docker_engine import EngineUnavailable, ensure_programs, free_port
from tests.helpers.docker_fixtures import unavailable

pytestmark = pytest.mark.slow  # starts a registry


@pytest.fixture
def auth_registry(tmp_path):
    bcrypt = pytest.importorskip("bcrypt")  # paramiko's dependency (the hyperai extra)
    try:
        ensure_programs("docker-registry")
    except EngineUnavailable as err:
        unavailable("docker-registry", err)
    port = free_port()
    (tmp_path / "htpasswd").write_text("robot:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=5)).decode() + "\n")
    (tmp_path / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\n"
        f"auth:\n  htpasswd:\n    realm: test\n    path: {tmp_path / 'htpasswd'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    with open(tmp_path / "registry.log", "wb") as log:
        process = subprocess.Popen([shutil.which("docker-registry") or "docker-registry", "serve",
                                    str(tmp_path / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=5)
            except urllib.error.HTTPError:
                break  # 401: it answers
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    unavailable("docker-registry", RuntimeError((tmp_path / "registry.log").read_text()[-1000:]))
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=60)


def _push_manifest(address: str, repository: str, tag: str) -> str:
    """Upload a config blob and an image manifest naming it; return the manifest's digest."""
    auth = {"Authorization": "Basic " + base64.b64encode(b"robot:s3cret").decode()}
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    start = urllib.request.Request(f"http://{address}/v2/{repository}/blobs/uploads/", method="POST", headers=auth)
    with urllib.request.urlopen(start, timeout=60) as answer:
        location = answer.headers["Location"]
    upload = urllib.request.Request(f"{location}{'&' if '?' in location else '?'}digest={digest}", data=config,
                                    method="PUT", headers={**auth, "Content-Type": "application/octet-stream"})
    urllib.request.urlopen(upload, timeout=60).close()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "size": len(config), "digest": digest}, "layers": []}).encode()
    kind = "application/vnd.docker.distribution.manifest.v2+json"
    put = urllib.request.Request(f"http://{address}/v2/{repository}/manifests/{tag}", data=manifest, method="PUT",
                                 headers={**auth, "Content-Type": kind})
    with urllib.request.urlopen(put, timeout=60) as answer:
        return str(answer.headers["Docker-Content-Digest"])


def test_the_users_docker_login_is_used(auth_registry, tmp_path, monkeypatch):
    repository = f"{auth_registry}/team/app"
    pushed = _push_manifest(auth_registry, "team/app", "abc123")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    with pytest.raises(BuildError, match=r"refused to say whether it holds .* \(HTTP 401\)\n    fix: log in with "
                                         r"`docker login 127.0.0.1:\d+`"):
        manifest_digest(repository, "abc123")
    (tmp_path / "docker").mkdir()
    login = base64.b64encode(b"robot:s3cret").decode()  # what `docker login` writes without a credential store
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {auth_registry: {"auth": login}}}))
    assert manifest_digest(repository, "abc123") == pushed
    assert manifest_digest(repository, "not-there") is None
