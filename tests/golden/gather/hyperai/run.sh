#!/bin/sh
# Starts one run of compose.yaml (in this folder) in the background and returns: sh run.sh [RUN_ID]
# `pipecast submit --target hyperai` runs it over SSH with the run's id and parameters in the
# environment; the crontab entry pipecast installs runs it on the schedule with the defaults.
set -eu
cd "$(dirname "$0")"
PIPECAST_RUN_ID=${1:-scheduled-$(date -u +%Y%m%d-%H%M%S)}
export PIPECAST_RUN_ID
PIPECAST_ARTIFACT_DIR="${PIPECAST_ARTIFACT_DIR:-$PWD/artifacts}"
export PIPECAST_ARTIFACT_DIR
# Each parameter: its value in the environment, else the pipeline's default.
[ "${PIPECAST_PARAM_lr+set}" = set ] || PIPECAST_PARAM_lr=0.1
export PIPECAST_PARAM_lr
[ "${PIPECAST_PARAM_n+set}" = set ] || PIPECAST_PARAM_n=3
export PIPECAST_PARAM_n
if [ -f secrets.env ]; then set -a; . ./secrets.env; set +a; fi
project=${PIPECAST_PROJECT:-gather-$(printf '%s' "$PIPECAST_RUN_ID" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9_-' '-')}
docker=${PIPECAST_DOCKER:-docker}
# The file must load with this run's values: a mistake is reported here, before anything starts.
$docker compose --file compose.yaml --project-name "$project" config --quiet
state=runs/$project
mkdir -p runs
# mkdir is atomic: whoever makes the folder first owns the run (a submit that lost its answer may
# have given the run up already; then it must not start).
mkdir "$state" || { echo "run $project was started or given up before" >&2; exit 1; }
# `up --detach` waits for each upstream step to finish: run it in its own session, so that it
# outlives this shell and the SSH connection, and return at once.
nohup setsid sh -c '"$@"; echo $? >"$0/exit"' "$state" $docker compose --file compose.yaml \
    --project-name "$project" up --detach >"$state/log" 2>&1 </dev/null &
echo $! >"$state/pid"
echo "started $project (docker compose output: $PWD/$state/log)"
