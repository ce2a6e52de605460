"""Asking a registry whether it holds an image, through the registry HTTP API v2 (the distribution spec).

``HEAD /v2/<name>/manifests/<tag>`` answers 200 with the manifest's digest in ``Docker-Content-Digest``, or 404.
Credentials are the user's existing Docker ones: ``$DOCKER_CONFIG/config.json`` (default ``~/.docker``),
its ``auths`` entries or a credential helper (``credHelpers``, ``credsStore``: ``docker-credential-<name> get``),
as ``docker login`` leaves them. Token authentication (``WWW-Authenticate: Bearer``) is followed. A registry on
127.0.0.1 or localhost is spoken to over plain HTTP, as Docker does; others over HTTPS unless told otherwise.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipecast.errors import BuildError

DOCKER_HUB = "registry-1.docker.io"
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Repository:
    """A repository: the registry host (with port) and the path of the repository on it."""

    host: str
    path: str

    @classmethod
    def parse(cls, text: str) -> Repository:
        """``127.0.0.1:5000/team/app`` → host ``127.0.0.1:5000``, path ``team/app`` (Docker's naming rules)."""
        first, _, rest = text.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            return cls(first, rest)
        path = text if "/" in text else f"library/{text}"
        return cls(DOCKER_HUB, path)

    @property
    def plain_http(self) -> bool:
        """Whether Docker itself would talk HTTP to it (loopback registries)."""
        host = self.host.rsplit(":", 1)[0] if not self.host.startswith("[") else self.host.split("]")[0] + "]"
        return host in ("localhost", "[::1]") or host.startswith("127.")


def manifest_digest(repository: str, tag: str, *, insecure: bool = False) -> str | None:
    """The digest (``sha256:...``) of ``repository:tag`` in its registry; None when the registry has no such tag."""
    repo = Repository.parse(repository)
    scheme = "http" if insecure or repo.plain_http else "https"
    url = f"{scheme}://{repo.host}/v2/{repo.path}/manifests/{urllib.parse.quote(tag)}"
    headers = {"Accept": MANIFEST_TYPES}
    auth: str | None = None
    for _ in range(2):
        request = urllib.request.Request(url, method="HEAD", headers={**headers, **({"Authorization": auth}
                                                                                    if auth else {})})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                digest = answer.headers.get("Docker-Content-Digest")
                if not digest:
                    raise BuildError(f"registry {repo.host!r} answered for {repository}:{tag} without a "
                                     "Docker-Content-Digest header", fix="use a registry that follows the "
                                                                         "distribution spec")
                return str(digest)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            if err.code == 401 and auth is None:
                auth = _authorization(repo, err.headers.get("WWW-Authenticate", ""))
                if auth:
                    continue
            raise BuildError(f"registry {repo.host!r} refused to say whether it holds {repository}:{tag} "
                             f"(HTTP {err.code})", fix=f"log in with `docker login {repo.host}`") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise BuildError(f"cannot reach registry {repo.host!r} ({url}): {reason}",
                             fix="check the repository setting, that the registry runs, and "
                                 "insecure_registry=true for a plain-HTTP registry") from None
    return None


def _authorization(repo: Repository, challenge: str) -> str | None:
    """The Authorization header answering ``challenge`` with the user's Docker credentials."""
    scheme, _, params = challenge.partition(" ")
    found = credentials(repo.host)
    basic = "Basic " + base64.b64encode(f"{found[0]}:{found[1]}".encode()).decode() if found else None
    if scheme.lower() == "basic":
        return basic
    if scheme.lower() != "bearer":
        return None
    fields = dict(_challenge_fields(params))
    realm = fields.pop("realm", None)
    if not realm:
        return None
    fields.setdefault("scope", f"repository:{repo.path}:pull")
    request = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(fields)}",
                                     headers={"Authorization": basic} if basic else {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            data = json.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    token = data.get("token") or data.get("access_token")
    return f"Bearer {token}" if token else None


def _challenge_fields(params: str) -> list[tuple[str, str]]:
    result = []
    for part in params.split(","):
        key, _, value = part.strip().partition("=")
        if key:
            result.append((key, value.strip('"')))
    return result


def credentials(host: str) -> tuple[str, str] | None:
    """The user's Docker credentials for ``host`` (config.json ``auths`` or a credential helper), if any."""
    config_dir = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        config = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    keys = [host, f"https://{host}", f"http://{host}"] + (["https://index.docker.io/v1/"] if host == DOCKER_HUB
                                                           else [])
    helper = next((config.get("credHelpers", {}).get(k) for k in keys if k in config.get("credHelpers", {})),
                  None) or config.get("credsStore")
    if helper:
        for key in keys:
            try:
                done = subprocess.run([f"docker-credential-{helper}", "get"], input=key, capture_output=True,
                                      text=True, timeout=TIMEOUT)
            except (OSError, subprocess.TimeoutExpired):
                break
            if done.returncode == 0:
                data = json.loads(done.stdout)
                return str(data.get("Username", "")), str(data.get("Secret", ""))
    for key in keys:
        entry = config.get("auths", {}).get(key)
        if entry and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
    return None
