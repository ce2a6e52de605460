"""SkyPilot's own loader and schemas accept what the vm_* targets emit (run in SkyPilot's interpreter)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml

from tests.helpers.cases import CASE_IDS, compile_case
from tests.targets.skypilot.sky_venv import run_sky
from tests.targets.skypilot.support import CLOUDS, SETTINGS, task_documents

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def loaded(sky_interpreter, tmp_path_factory):
    """Every golden case for every cloud, plus broken files, as SkyPilot's loader saw them (one process)."""
    folder = tmp_path_factory.mktemp("sky-yaml")
    cases: dict[str, dict] = {}
    texts: dict[str, str] = {}
    for target in CLOUDS:
        for name in CASE_IDS:
            bundle = compile_case(target, name, settings=SETTINGS[target]).bundle
            path = folder / f"{target}-{bundle.main_file}"
            path.write_text(bundle[bundle.main_file], encoding="utf-8")
            cases[f"{target}/{name}"] = {"path": str(path)}
            texts[f"{target}/{name}"] = bundle[bundle.main_file]
    quickstart = compile_case("vm_aws", "quickstart", settings=SETTINGS["vm_aws"]).bundle["quickstart.sky.yaml"]
    (folder / "override.yaml").write_text(quickstart, encoding="utf-8")
    cases["override"] = {"path": str(folder / "override.yaml"), "env": [["n", "20"]]}
    broken = yaml.safe_load(quickstart)
    broken["resources"]["cpu"] = "2+"  # a misspelt key: SkyPilot's schema must reject it
    (folder / "broken.yaml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    cases["broken_resources"] = {"path": str(folder / "broken.yaml")}
    misspelt = yaml.safe_load(quickstart)
    misspelt["setup_commands"] = "true"
    (folder / "misspelt.yaml").write_text(yaml.safe_dump(misspelt), encoding="utf-8")
    cases["broken_task"] = {"path": str(folder / "misspelt.yaml")}
    gcp = yaml.safe_load(compile_case("vm_gcp", "quickstart",
                                      settings=SETTINGS["vm_gcp"]).bundle["quickstart.sky.yaml"])
    gcp["resources"]["labels"] = {"Team:ML": ""}  # what pipecast refuses: SkyPilot's own GCP rule must too
    (folder / "bad-label.yaml").write_text(yaml.safe_dump(gcp), encoding="utf-8")
    cases["broken_label"] = {"path": str(folder / "bad-label.yaml")}
    (folder / "cases.json").write_text(json.dumps(cases), encoding="utf-8")
    run_sky(sky_interpreter, HERE / "in_sky_validate.py", str(folder / "cases.json"), str(folder / "out.json"),
            home=tmp_path_factory.mktemp("home"))
    return json.loads((folder / "out.json").read_text(encoding="utf-8")), texts


@pytest.mark.parametrize("target", list(CLOUDS))
@pytest.mark.parametrize("name", CASE_IDS)
def test_skypilot_loads_every_case(loaded, target, name):
    results, texts = loaded
    result = results[f"{target}/{name}"]
    assert "error" not in result, result
    header, documents = task_documents(texts[f"{target}/{name}"])
    assert [t["name"] for t in result["tasks"]] == [d["name"] for d in documents]
    assert all(t["cloud"] == CLOUDS[target] for t in result["tasks"])
    if header is not None:
        # Several tasks: SkyPilot reads them as a chain, each task after the one before it.
        assert result["is_chain"] and result["name"] == header["name"]
        names = [d["name"] for d in documents]
        assert sorted(map(tuple, result["edges"])) == sorted(itertools.pairwise(names))


def test_resources_and_secrets_as_skypilot_reads_them(loaded):
    results, _ = loaded
    tasks = {t["name"]: t for t in results["vm_gcp/full_options"]["tasks"]}
    assert tasks["load"]["cpus"] == "2+" and tasks["load"]["memory"] == "4+"
    assert tasks["train"]["accelerators"] == {"T4": 1}
    assert list(tasks["train"]["image_id"].values()) == ["docker:ghcr.io/acme/gpu:2.1"]
    # Secrets have no value in the file: SkyPilot holds them as references resolved at launch.
    assert tasks["load"]["secrets"] == ["API_TOKEN", "DB_PASSWORD"]
    assert tasks["train"]["secrets"] == ["API_TOKEN"]


def test_tags_reach_the_vms_as_labels_skypilot_accepts(loaded):
    results, _ = loaded
    for target in CLOUDS:
        assert {t["labels"] and tuple(t["labels"]) for t in results[f"{target}/full_options"]["tasks"]} == {
            ("golden", "options")}
    for label, result in results.items():
        if label.startswith(tuple(CLOUDS)):
            assert all(t["label_errors"] == [] for t in result["tasks"]), label
    (task,) = results["broken_label"]["tasks"]
    assert "Invalid label key Team:ML for GCP" in task["label_errors"][0]


def test_env_override_reaches_the_task(loaded):
    results, _ = loaded
    (task,) = results["override"]["tasks"]
    assert task["envs"]["n"] == "20" and task["envs"]["seed"] == "7"


def test_hostile_values_come_back_verbatim_through_skypilot(loaded):
    from tests.golden.cases.hostile import EVIL

    results, _ = loaded
    for task in results["vm_aws/hostile"]["tasks"]:
        assert task["envs"]["text"] == EVIL
    assert results["vm_aws/hostile"]["tasks"][0]["envs"]["EVIL_ENV"] == EVIL


def test_skypilot_rejects_broken_files(loaded):
    """The validator is not a rubber stamp: a misspelt key fails at the resources and the task level."""
    results, _ = loaded
    assert "cpu" in results["broken_resources"]["error"]
    assert "setup_commands" in results["broken_task"]["error"]
