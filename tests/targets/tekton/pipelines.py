"""Small pipelines for the Tekton and Argo emit tests (the golden cases cover the rest)."""

from __future__ import annotations

from pipecast import Resources, Retry, pipeline, step
from pipecast.compiler import ir
from tests.helpers.renamed_ir import renamed


@step(retry=Retry(attempts=4), timeout="90s")
def flaky(x: int) -> int:
    return x


@step(retry=Retry(attempts=3, delay="5s", backoff=1.5))
def fractional_backoff(x: int) -> int:
    return x


@step(resources=Resources(gpu=2, gpu_type="nvidia-a100"),
      settings={"tekton": {"node_selector": {"pool": "gpu"}, "tolerations": [
          {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
                "argo": {"node_selector": {"pool": "gpu"}, "tolerations": [
          {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}})
def gpu_step(x: int) -> int:
    return x


@step(env={"REF": "$(params.required) $(context.taskRun.name)", "TEMPLATE": "{{x}} {{ 7*7 }} {{workflow}}",
           "DOLLARS": "$$HOME $(HOME)"})
def env_step(x: int) -> int:
    return x


@pipeline(name="options_check", image="ghcr.io/acme/app:1", artifact_root="s3://b/p")
def options_check(required: int, optional: str = "x"):
    flaky(required)
    fractional_backoff(required)
    gpu_step(required)
    env_step(required)


@step
def make() -> str:
    return "x"


@pipeline(name="no_image")
def no_image():
    make()


@step(name="same-name")
def one() -> int:
    return 1


@step(name="same_name")
def two() -> int:
    return 2


@pipeline(name="colliding", image="i", artifact_root="s3://b/p")
def colliding():
    one()
    two()


@step
def consume(blob: str) -> int:
    return len(blob)


@pipeline(name="huge", image="i", artifact_root="s3://b/p")
def huge():
    consume("x" * (1024 * 1024 + 10))


@step
def main() -> int:
    return 1


@pipeline(name="entry", image="i", artifact_root="s3://b")
def entry():
    main()


@step
def odd() -> int:
    return 1


@pipeline(name="odd", image="i", artifact_root="s3://b")
def _odd_names():
    odd()


class _OddNames:
    """The step renamed ``x{{workflow.name}}$(y)`` after building: tracing refuses that name, the targets
    must still refuse template syntax in a name an IR carries."""

    def build(self) -> ir.Pipeline:
        return renamed(_odd_names.build(), {"odd": "x{{workflow.name}}$(y)"})


odd_names = _OddNames()


@step(env={"TOKEN_DIR": "/var/run/token"})
def echo_value(text: str, data: dict) -> str:
    return text + str(data)


@pipeline(name="double_dollar", image="i", artifact_root="s3://b")
def double_dollar(text: str = "costs $$5", data: dict = {"k": "v"}):  # noqa: B006
    echo_value(text, data)


@pipeline(name="undefined_reference", image="i", artifact_root="s3://b")
def undefined_reference(text: str = "$(whoami) $HOME", data: dict = {"k": "$(z)"}):  # noqa: B006
    echo_value(text, data)


@pipeline(name="defined_reference", image="i", artifact_root="s3://b")
def defined_reference(text: str = "plain", data: dict = {"dir": "$(TOKEN_DIR)"}):  # noqa: B006
    echo_value(text, data)


@step(env={"RUN": "{{workflow.name}}"})
def argo_tag(text: str) -> str:
    return text


@pipeline(name="argo_tags", image="i", artifact_root="s3://b")
def argo_tags(text: str = "{{workflow.parameters.text}} {{=1+1}}"):
    argo_tag(text)


@pipeline(name="tekton_references", image="i", artifact_root="s3://b")
def tekton_references(text: str = "$(context.taskRun.name)", data: dict = {"k": "$(params.text)"}):  # noqa: B006
    echo_value(text, data)


# The golden hostile case without the tags Argo substitutes ("{{workflow.name}}"), which Argo refuses.
ARGO_EVIL = "a'b\"c\n{{ 7*7 }} ${{ github.token }} $(whoami) $HOME ${HOME} `id` \\ {% raw %} {{workflow}} {{x}} #x"


@step(env={"EVIL_ENV": ARGO_EVIL})
def echo_text(text: str, extra: str) -> str:
    return text + "|" + extra


@step
def echo_data(data: dict, text: str) -> dict:
    return {"data": data, "text": text}


@pipeline(name="hostile", description=ARGO_EVIL)
def argo_hostile(text: str = ARGO_EVIL, data: dict = {"k'\"{{x}}": "${{ y }}\n$(z)"}):  # noqa: B006
    first = echo_text(text, extra=ARGO_EVIL)
    echo_data({"nested": ["{{ 1 }}", "$(rm -rf /)", "${{ secrets.X }}"], "q": "'\""}, first)
    echo_data(data, text)


@step
def plain(x: int) -> int:
    return x


@step(retry=Retry(attempts=2), settings={
    "argo": {"service_account": "trainer", "retry_policy": "OnError"},
    "tekton": {"service_account": "trainer", "image_pull_secrets": ["gpu-registry"]},
    "kubernetes": {"service_account": "trainer", "image_pull_secrets": ["gpu-registry"]},
})
def own_identity(x: int) -> int:
    return x


@pipeline(name="identity", image="i", artifact_root="s3://b", settings={
    t: {"service_account": "runner", "image_pull_secrets": ["regcred"]} for t in ("argo", "tekton", "kubernetes")})
def identity(n: int = 1):
    own_identity(n)
    plain(n)


@step(settings={"argo": {"image_pull_secrets": ["gpu-registry"]}})
def own_pull_secret(x: int) -> int:
    return x


@pipeline(name="argo_pull", image="i", artifact_root="s3://b")
def argo_pull(n: int = 1):
    own_pull_secret(n)
