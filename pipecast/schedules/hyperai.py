"""hyperai schedules: the crontab entry submit installs on the Docker host, read and removed over SSH.

Submit replaces the pipeline's entry (found by its ``# pipecast-hyperai <pipeline> <folder> #`` marker) rather
than adding one, so a pipeline has one entry per remote folder. ``list`` reads ``crontab -l``; ``delete``
writes the crontab back without the pipeline's entries (of every folder, or of ``-c remote_dir`` only). cron
reports no next run. Runs already started go on.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from pipecast.errors import SubmitError
from pipecast.schedules import Schedule
from pipecast.targets.base import Target

# cron_line(): "<cron> [DOCKER=…] sh <folder>/run.sh >><folder>/cron.log 2>&1 # pipecast-hyperai <base> <folder> #"
ENTRY = re.compile(r"^(?P<cron>@\w+|(?:\S+\s+){4}\S+)\s.*# pipecast-hyperai (?P<base>[a-z0-9-]+) (?P<dir>.+) #$")


def _crontab(client: Any, cfg: Any) -> str:
    from pipecast.targets.hyperai.remote import _last_line, run_remote

    code, out, err = run_remote(client, cfg, "crontab -l")
    if code != 0 and "no crontab" in err:
        return ""
    if code != 0:
        raise SubmitError(f"reading the crontab of {cfg.where} failed: {_last_line(err or out, code)}")
    return out


def _host(config: Mapping[str, Any], pipeline: str = "") -> Any:
    from pipecast.targets.hyperai.remote import HostConfig

    return HostConfig.from_config(config, pipeline)


def list_schedules(target: Target, config: Mapping[str, Any]) -> list[Schedule]:
    """The pipecast entries of the SSH user's crontab on the host."""
    from pipecast.targets.hyperai.remote import connect

    cfg = _host(config)
    with connect(cfg) as client:
        text = _crontab(client, cfg)
    return [Schedule(pipeline=match["base"], target=target.name, schedule=match["cron"],
                     id=f"{cfg.where} {match['dir']}", state="active")
            for match in map(ENTRY.match, text.splitlines()) if match]


def delete_schedule(target: Target, pipeline: str, config: Mapping[str, Any]) -> list[str]:
    """Remove the pipeline's crontab entries (only the one of ``-c remote_dir`` when given); others stay."""
    from pipecast.targets.hyperai.emit import project_base
    from pipecast.targets.hyperai.remote import _last_line, connect, run_remote

    cfg = _host(config, pipeline)
    base, folder = project_base(pipeline), config.get("remote_dir")
    with connect(cfg) as client:
        lines = _crontab(client, cfg).splitlines()
        gone = [line for line in lines if (match := ENTRY.match(line)) and match["base"] == base
                and (not folder or match["dir"] == cfg.remote_dir)]
        if not gone:
            return []
        kept = "".join(f"{line}\n" for line in lines if line not in gone)
        code, out, err = run_remote(client, cfg, f"printf '%s' {shlex.quote(kept)} | crontab -")
        if code != 0:
            raise SubmitError(f"writing the crontab of {cfg.where} failed: {_last_line(err or out, code)}")
    return [f"removed from the crontab of {cfg.where}: {line}" for line in gone]
