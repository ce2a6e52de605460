"""``pipecast ui`` in a real browser: Debian's headless Chromium, driven through its chromedriver by Selenium.

The run store is filled by real ``pipecast run``s (the quickstart, and a pipeline whose step fails) plus a
record whose every value is markup; ``pipecast ui`` serves it from its own process. Screenshots go to the
test's ``tmp_path`` (printed). With ``CI`` set, a Chromium that cannot start fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipecast.runs.store import RunStore
from tests.helpers.docker_engine import EngineUnavailable, apt_install
from tests.helpers.docker_fixtures import unavailable
from tests.helpers.processes import env_with_root, finish, kill_group
from tests.helpers.slow import slow_fixture
from tests.unit.test_ui import HOSTILE, hostile_record

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PAGE_SECONDS = 120  # a page load on a busy 2-core machine


def _ensure_chromium() -> None:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        try:
            apt_install("chromium", "chromium-driver")
        except (subprocess.SubprocessError, OSError) as err:
            raise EngineUnavailable(f"cannot install chromium with apt-get: {err}") from None


@pytest.fixture(scope="session")
@slow_fixture
def browser() -> Iterator[Any]:
    """One headless Chromium for the session."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        _ensure_chromium()
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1600"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except Exception as err:  # ImportError, EngineUnavailable, selenium's WebDriverException
        unavailable("headless Chromium", err)
    driver.set_page_load_timeout(PAGE_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def pipecast(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipecast.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_runs_page_and_a_run_page_in_chromium(browser, tmp_path, pipecast_home):
    from selenium.webdriver.common.by import By

    env = {**env_with_root(), "PIPECAST_HOME": str(pipecast_home)}
    good = pipecast("run", "examples/quickstart.py", "-q", "-p", "n=8", "-p", f"label={HOSTILE}", env=env)
    assert good.returncode == 0, good.stderr
    bad = pipecast("run", "tests/unit/logs_steps.py:broken", "-q", env=env)
    assert bad.returncode != 0
    store = RunStore.default()
    hostile = hostile_record(store)
    good_id, bad_id = (store.get(name)["id"] for name in ("quickstart", "broken"))

    server = subprocess.Popen([sys.executable, "-m", "pipecast.cli", "ui", "--no-browser", "--port", "0"], cwd=ROOT,
                              env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip()  # the URL, printed once it listens
        assert base.startswith("http://127.0.0.1:"), finish(server, 5)

        def shot(name: str) -> None:
            path = tmp_path / f"{name}.png"
            assert browser.save_screenshot(str(path)), path
            print(f"screenshot: {path}")

        browser.get(base)
        shot("runs")
        rows = {row.get_attribute("data-run"): row.get_attribute("data-status")
                for row in browser.find_elements(By.CSS_SELECTOR, "#runs tr.run")}
        assert rows == {good_id: "succeeded", bad_id: "failed", hostile: "failed"}
        assert browser.find_elements(By.TAG_NAME, "img") == []  # the hostile values stayed text
        assert f"pipe{HOSTILE}" in browser.find_element(By.ID, "runs").text

        browser.find_element(By.CSS_SELECTOR, "select[name=status] option[value=failed]").click()
        browser.find_element(By.CSS_SELECTOR, "#filters button").click()
        shot("failed-runs")
        assert {row.get_attribute("data-run") for row in browser.find_elements(By.CSS_SELECTOR, "#runs tr.run")} \
            == {bad_id, hostile}

        browser.get(base)
        browser.find_element(By.LINK_TEXT, good_id).click()
        shot("quickstart-run")
        nodes = {node.get_attribute("data-step"): node.get_attribute("data-status")
                 for node in browser.find_elements(By.CSS_SELECTOR, "#graph svg g.node")}
        assert nodes == dict.fromkeys(["make_numbers", "split", "total", "total_2", "report"], "done")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#graph svg path.edge")) == 5
        assert browser.find_element(By.ID, "parameters").text.splitlines()[0] == f'label "{HOSTILE}"'.replace(
            '"alert(1)"', '\\"alert(1)\\"')
        artifacts = browser.find_element(By.ID, "artifacts").text
        assert "evens" in artifacts and "file://" in artifacts

        browser.get(f"{base}/runs/{bad_id}")
        shot("failed-run")
        nodes = {node.get_attribute("data-step"): node.get_attribute("data-status")
                 for node in browser.find_elements(By.CSS_SELECTOR, "#graph svg g.node")}
        assert nodes == {"explode": "failed", "never": "skipped"}
        assert "no world here" in browser.find_element(By.ID, "steps").text
        log = browser.find_element(By.CSS_SELECTOR, "details.log[data-step=explode]")
        log.find_element(By.TAG_NAME, "summary").click()  # the step's log, inline
        assert log.find_element(By.TAG_NAME, "pre").text.splitlines()[0] == "about to fail"
        shot("failed-run-log")

        browser.get(base)
        browser.find_element(By.LINK_TEXT, hostile).click()
        shot("hostile-run")
        assert browser.find_element(By.ID, "run-id").text == hostile
        assert browser.find_elements(By.TAG_NAME, "img") == []
        assert browser.find_element(By.CSS_SELECTOR, "#graph svg g.node").get_attribute("data-step") \
            == f"step{HOSTILE}"
        assert browser.find_elements(By.CSS_SELECTOR, "a.engine") == []  # javascript: is never a link
    finally:
        kill_group(server)
        finish(server)
