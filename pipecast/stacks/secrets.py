"""Credentials never go into a stack: refuse values that look like one, resolve the references a stack names.

A stack's ``-c`` value may be a reference: ``env:VAR`` (an environment variable) or ``keyring:service/name``
(the system keyring, through the ``keyring`` package when it is installed). The Docker and cloud credential
chains need nothing in a stack: the target's SDK reads them (``credentials = ["aws"]`` only asks `stack verify`
to check they are there).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pipecast.errors import Problem, StackError

_WORDS = frozenset({"token", "password", "passwd", "pwd", "secret", "credential", "apikey", "passphrase"})
# A key ending like these names where a credential is (a variable, a file, a secret store), not the credential.
_POINTERS = frozenset({"env", "file", "name", "store", "path", "id", "ref", "conn", "arn", "var", "secrets"})
_KEYS = frozenset({"api_key", "access_key", "secret_access_key", "private_key", "account_key",
                   "connection_string", "sas", "auth"})
_ENV_REF = re.compile(r"env:([A-Za-z_][A-Za-z0-9_]*)")
_KEYRING_REF = re.compile(r"keyring:([^/\s]+)/(\S+)")
# Values that are credentials whatever their key: a URL with a password, a PEM private key, well-known tokens.
_LOOKS_SECRET = (
    (re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:[^\s/@]+@"), "a URL with a password in it"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"), "a GitHub token"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "an AWS access key id"),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"), "a GitLab token"),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"), "a JSON Web Token"),
)


def secret_key(key: str) -> bool:
    """Whether a setting's name says its value is a credential (``token``, ``password``, ``client_secret``...)."""
    parts = key.lower().replace("-", "_").split("_")
    if parts[-1] in _POINTERS:
        return False
    return key.lower() in _KEYS or any(part in _WORDS for part in parts)


def is_reference(value: Any) -> bool:
    """Whether ``value`` names where a credential comes from (``env:VAR``, ``keyring:service/name``)."""
    return isinstance(value, str) and bool(_ENV_REF.fullmatch(value) or _KEYRING_REF.fullmatch(value))


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def credential_problems(stack_name: str, section: str, values: Mapping[str, Any]) -> list[Problem]:
    """Every value in ``values`` (``config`` or ``settings``) that is, or looks like, a credential."""
    problems: list[Problem] = []
    where = f"stack {stack_name!r}"
    flag = {"config": "-c", "settings": "--set", "build": "--build"}.get(section, f"--{section.replace('_', '-')}")
    for key, value in values.items():
        if secret_key(key) and not (section == "config" and is_reference(value)):
            fix = (f"name where it comes from instead: {flag} {key}=env:VARIABLE, or "
                   f"{flag} {key}=keyring:SERVICE/NAME (with `pip install keyring`)") if section == "config" else (
                "settings are written into the engine's files: declare a Secret in the pipeline "
                "(@step(secrets=[Secret(...)])) or pass the credential as a connection setting from the environment")
            problems.append(Problem(f"{section} key {key!r} holds a credential, and stacks never store "
                                    "credentials", location=where, fix=fix))
            continue
        for path, text in _strings(value, key):
            for pattern, what in _LOOKS_SECRET:
                if pattern.search(text):
                    label = path if path == section else f"{section} {path}"
                    problems.append(Problem(
                        f"{label} looks like {what}, and stacks never store credentials",
                        location=where, fix="keep it in the environment or a keyring and name it: "
                                            f"{flag} {key}=env:VARIABLE (a URL without the password, the password "
                                            "from the environment)"))
                    break
    return problems


def keyring_installed() -> bool:
    """Whether the ``keyring`` package can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("keyring") is not None


def reference_problems(stack_name: str, config: Mapping[str, Any]) -> list[Problem]:
    """References that cannot work here at all (a keyring reference without the keyring package)."""
    return [Problem(f"-c {key}={value} needs the keyring package, which is not installed",
                    location=f"stack {stack_name!r}", fix="python -m pip install keyring")
            for key, value in config.items()
            if isinstance(value, str) and _KEYRING_REF.fullmatch(value) and not keyring_installed()]


def resolve(stack_name: str, config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``config`` with every reference replaced by its value; a StackError when one has none."""
    environ = os.environ if environ is None else environ
    resolved: dict[str, Any] = {}
    for key, value in config.items():
        resolved[key] = value
        if not isinstance(value, str):
            continue
        env = _ENV_REF.fullmatch(value)
        ring = _KEYRING_REF.fullmatch(value)
        if env:
            if env[1] not in environ:
                raise StackError(f"stack {stack_name!r}: -c {key}={value}, but ${env[1]} is not set; set it (export "
                                 f"{env[1]}=...) or update the stack")
            resolved[key] = environ[env[1]]
        elif ring:
            resolved[key] = _from_keyring(stack_name, key, ring[1], ring[2])
    return resolved


def _from_keyring(stack_name: str, key: str, service: str, name: str) -> str:
    if not keyring_installed():
        raise StackError(f"stack {stack_name!r}: -c {key}=keyring:{service}/{name} needs the keyring package; "
                         "python -m pip install keyring")
    import keyring
    from keyring.errors import KeyringError

    try:
        value = keyring.get_password(service, name)
    except KeyringError as err:
        raise StackError(f"stack {stack_name!r}: the keyring could not be read for {service}/{name}: {err}") from None
    if value is None:
        raise StackError(f"stack {stack_name!r}: the keyring has no password for service {service!r}, user {name!r}; "
                         f"store it with `keyring set {service} {name}`")
    return str(value)
