"""Golden case: hostile values that must stay data in every emitted file.

Quotes, newlines, template syntax of every engine (Jinja ``{{ }}``, GitHub/Azure ``${{ }}``, Tekton
``$( )``, Argo ``{{workflow.name}}``), shell substitutions and backslashes, in parameter defaults, constants,
env values and the description. None may change the structure of a file or run code.
"""

from pipecast import pipeline, step

EVIL = "a'b\"c\n{{ 7*7 }} ${{ github.token }} $(whoami) $HOME ${HOME} `id` \\ {% raw %} {{workflow.name}} #x"


@step(env={"EVIL_ENV": EVIL})
def echo_text(text: str, extra: str) -> str:
    return text + "|" + extra


@step
def echo_data(data: dict, text: str) -> dict:
    return {"data": data, "text": text}


@pipeline(
    name="hostile",
    description=EVIL,
)
def hostile(text: str = EVIL, data: dict = {"k'\"{{x}}": "${{ y }}\n$(z)"}):  # noqa: B006
    first = echo_text(text, extra=EVIL)
    echo_data({"nested": ["{{ 1 }}", "$(rm -rf /)", "${{ secrets.X }}"], "q": "'\""}, first)
    echo_data(data, text)
