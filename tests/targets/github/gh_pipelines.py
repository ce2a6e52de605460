"""Pipelines for the github target's tests: hostile step and output names, and a pipeline per setting.

Imported by the runtime as ``gh_pipelines`` (the tests run steps with ``working_directory`` set to this
folder, as a user would point it at their pipelines' import root).
"""

from pipecast import Secret, pipeline, step

EVIL = "a'b\"c\n{{ 7*7 }} ${{ github.token }} $(whoami) `id` \\ {% raw %} {{workflow.name}} #x"
EVIL_STEP = "say ${{ github.token }} 'q' \"dq\" $(id) `id`\nnext"
EVIL_OUTPUT = "out ${{ x }} '$(y)'"


@step(env={"EVIL_ENV": EVIL})  # renamed EVIL_STEP / EVIL_OUTPUT after building: see support.py
def produce(text: str, flag: bool) -> str:
    return f"{text}|{flag}"


@step(secrets=[Secret("api-token", env="API_TOKEN")])
def consume(value: str, numbers: list) -> dict:
    return {"value": value, "numbers": numbers}


@pipeline(name="hostile_names", schedule="*/5 * * * *", description="Names no engine should trust.")
def hostile_names(text: str = EVIL, flag: bool = False, numbers: list = [1, "${{ 2 }}"]):  # noqa: B006
    consume(produce(text, flag), numbers)
