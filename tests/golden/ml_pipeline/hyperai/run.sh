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
[ "${PIPECAST_PARAM_rates+set}" = set ] || PIPECAST_PARAM_rates='[0.01, 0.1, 1.0]'
export PIPECAST_PARAM_rates
[ "${PIPECAST_PARAM_threshold+set}" = set ] || PIPECAST_PARAM_threshold=0.8
export PIPECAST_PARAM_threshold
[ "${PIPECAST_PARAM_samples+set}" = set ] || PIPECAST_PARAM_samples=200
export PIPECAST_PARAM_samples
[ "${PIPECAST_PARAM_seed+set}" = set ] || PIPECAST_PARAM_seed=7
export PIPECAST_PARAM_seed
[ "${PIPECAST_PARAM_epochs+set}" = set ] || PIPECAST_PARAM_epochs=20
export PIPECAST_PARAM_epochs
if [ -f secrets.env ]; then set -a; . ./secrets.env; set +a; fi
project=${PIPECAST_PROJECT:-ml-pipeline-$(printf '%s' "$PIPECAST_RUN_ID" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9_-' '-')}
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
