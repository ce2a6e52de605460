"""Run inside SkyPilot's interpreter: run a task's ``run`` script as SkyPilot's job code runs it on the VM.

Usage: ``python in_sky_cancel.py CONFIG.json``, CONFIG holding ``{"script", "log", "env"}``. SkyPilot 0.14.1's own
``sky/skylet/log_lib.py`` ``run_bash_command_with_log`` (what the job's Ray task calls) wraps the script
(``make_task_bash_script``: ``cd ~/sky_workdir``, the env exported), runs it as ``/bin/bash -i FILE`` in a session of
its own (``run_with_log``) and starts ``sky/skylet/subprocess_daemon.py``, which watches this process: once it has
ended (a cancelled job's worker), the daemon SIGTERMs the script and its descendants, and SIGKILLs them 30 s later.
"""

from __future__ import annotations

import json
import sys

from sky.skylet import log_lib

config = json.loads(open(sys.argv[1], encoding="utf-8").read())
print(log_lib.run_bash_command_with_log(config["script"], config["log"], env_vars=config["env"], with_ray=True),
      flush=True)
