"""``pipecast runs logs`` on the kubernetes target: step pods found by their labels, their logs read (and
followed) through the pod ``log`` subresource of the fake API server, whose Jobs really run here."""

from __future__ import annotations

from click.testing import CliRunner

from pipecast.cli import main
from pipecast.flow import submit_pipeline
from pipecast.runs.logs import run_logs
from pipecast.runs.status import RunStatus
from tests.targets.kubernetes import pipelines


def test_follow_reads_every_try_of_every_step_then_one_step_by_its_pipecast_name(cluster, tmp_path):
    pipeline = pipelines.flaky_pipeline.build()
    handle = submit_pipeline(pipeline, "kubernetes", {"marker": str(tmp_path / "marker")}, cluster.settings(),
                             cluster.config())
    followed = list(run_logs(handle.run_id, cluster.config(), follow=True, timeout=300))
    assert handle.status() is RunStatus.SUCCEEDED, handle.detail
    headers = [line for line in followed if line.startswith("==> ")]
    pods = sorted(p["metadata"]["name"] for p in cluster.fake.items(f"/api/v1/namespaces/{cluster.namespace}/pods")
                  if p["metadata"]["labels"].get("pipecast.dev/role") == "step")
    assert len(pods) == 3 and [h.split(" (pod ")[0] for h in headers] == ["==> flaky", "==> flaky", "==> plus-one"]
    first_try = followed[1:followed.index(headers[1])]
    assert "RuntimeError: first try fails on purpose" in "\n".join(first_try)
    assert f"pipecast: step 'flaky' succeeded (run {handle.engine_run_id})" in followed
    assert followed[-1] == f"pipecast: step 'plus_one' succeeded (run {handle.engine_run_id})"
    follows = [r for r in cluster.fake.requests if r["path"].endswith("/log")]
    assert follows and all(r["query"] == {"container": "step", "follow": "True"} for r in follows)

    result = CliRunner().invoke(main, ["runs", "logs", handle.run_id, "--step", "plus_one",
                                       "-c", f"kubeconfig={cluster.kubeconfig}"])
    assert result.exit_code == 0, result.output
    assert result.output == f"pipecast: step 'plus_one' succeeded (run {handle.engine_run_id})\n"
    result = CliRunner().invoke(main, ["runs", "logs", handle.run_id, "--step", "train",
                                       "-c", f"kubeconfig={cluster.kubeconfig}"])
    assert result.exit_code == 2 and "has no step 'train'; its steps: 'flaky', 'plus-one'" in result.output
