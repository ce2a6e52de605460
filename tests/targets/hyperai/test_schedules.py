"""``pipecast schedules list|delete`` on hyperai: the real OpenSSH server (sshd.py) and the host's ``crontab``.

The entry is installed by submit's own ``install_schedule`` over SSH (a whole submit needs Docker, proven in
``test_docker.py``); someone else's line must survive the delete.
"""

from __future__ import annotations

import json
import subprocess

from click.testing import CliRunner

from pipecast.cli import main
from pipecast.targets.hyperai.remote import HostConfig, connect, install_schedule
from tests.helpers.cases import case

OTHER = "17 2 * * * /bin/true # someone else's line"


def cli(*args):
    return CliRunner().invoke(main, ["schedules", *args])


def test_the_crontab_entry_is_listed_once_and_removed(server, root_crontab, tmp_path):
    subprocess.run(["crontab", "-"], input=f"{OTHER}\n", text=True, check=True)
    pipeline = case("ml_training").build()
    config = {**server.config, "remote_dir": str(tmp_path / "ml")}
    cfg = HostConfig.from_config(config, pipeline.name)
    with connect(cfg) as client:
        for _ in range(2):  # submitted twice: still one entry
            install_schedule(client, cfg, pipeline, cfg.remote_dir)
    flags = [arg for key, value in server.config.items() for arg in ("-c", f"{key}={value}")]
    listed = cli("list", "-t", "hyperai", *flags, "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output) == [{"pipeline": "ml-training", "target": "hyperai", "schedule": "0 4 * * 1",
                                          "id": f"{cfg.where} {tmp_path / 'ml'}", "next_run": None,
                                          "state": "active", "url": None}]
    deleted = cli("delete", "ml_training", "-t", "hyperai", *flags)
    assert deleted.exit_code == 0, deleted.output
    assert deleted.output.startswith(f"removed from the crontab of {cfg.where}: 0 4 * * 1 sh ")
    assert subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=True).stdout == f"{OTHER}\n"
    assert cli("delete", "ml_training", "-t", "hyperai", *flags).exit_code == 2
    assert cli("list", "-t", "hyperai", *flags).output == "no schedules\n"
