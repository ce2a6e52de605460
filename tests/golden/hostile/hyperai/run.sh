#!/bin/sh
# Starts one run of compose.yaml (in this folder) in the background: sh run.sh [RUN_ID]
# `pipecast submit --target hyperai` runs it over SSH with the run's id and parameters in the
# environment; the crontab entry pipecast installs runs it on the schedule with the defaults.
set -eu
cd "$(dirname "$0")"
PIPECAST_RUN_ID=${1:-scheduled-$(date -u +%Y%m%d-%H%M%S)}
export PIPECAST_RUN_ID
PIPECAST_ARTIFACT_DIR="${PIPECAST_ARTIFACT_DIR:-$PWD/artifacts}"
export PIPECAST_ARTIFACT_DIR
# Each parameter: its value in the environment, else the pipeline's default.
[ "${PIPECAST_PARAM_text+set}" = set ] || PIPECAST_PARAM_text='a'"'"'b"c
{{ 7*7 }} ${{ github.token }} $(whoami) $HOME ${HOME} `id` \ {% raw %} {{workflow.name}} #x'
export PIPECAST_PARAM_text
[ "${PIPECAST_PARAM_data+set}" = set ] || PIPECAST_PARAM_data='{"k'"'"'\"{{x}}": "${{ y }}\n$(z)"}'
export PIPECAST_PARAM_data
if [ -f secrets.env ]; then set -a; . ./secrets.env; set +a; fi
project=${PIPECAST_PROJECT:-hostile-$(printf '%s' "$PIPECAST_RUN_ID" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9_-' '-')}
exec ${PIPECAST_DOCKER:-docker} compose --file compose.yaml --project-name "$project" up --detach
