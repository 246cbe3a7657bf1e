"""What a user sees in the Dagster UI, opened in headless Chromium (Debian's, through Selenium):
the run page of a deployment whose steps ran on Slurm. Screenshots go to the lab's folder."""

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterRunStatus
from dagster._core.events import DagsterEventType
from dagster._core.storage.dagster_run import RunsFilter

from tests import lab
from tests.deployment import Deployment

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.lab


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    # --no-sandbox: the suite runs as root, where Chromium refuses its sandbox.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1400"):
        options.add_argument(arg)
    # The browser needs none of the test's secrets (the database password is in its environment).
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_PG_PASSWORD"}
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver", env=env))
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(browser: webdriver.Chrome, name: str) -> Path:
    # Step output and stack traces: for the lab's operator only.
    folder = lab.lab_dir() / "screenshots"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o700)
    path = folder / f"{name}.png"
    browser.save_screenshot(str(path))
    path.chmod(0o600)
    return path


def wait_for(browser: webdriver.Chrome, *patterns: str, timeout: float = 60) -> str:
    """The page's text once every regular expression in ``patterns`` matches it."""

    def shown() -> str | None:
        text = browser.find_element(By.TAG_NAME, "body").text
        return text if all(re.search(p, text) for p in patterns) else None

    try:
        return lab.wait_until(shown, timeout, what=f"{patterns} on {browser.current_url}")
    except AssertionError:
        screenshot(browser, "failed-wait")
        raise


def click(browser: webdriver.Chrome, xpath: str) -> None:
    WebDriverWait(browser, 30).until(expected_conditions.element_to_be_clickable((By.XPATH, xpath))).click()


def open_run(browser: webdriver.Chrome, d: Deployment, run_id: str, query: str = "") -> None:
    browser.get(f"{d.webserver_url}/runs/{run_id}{query}")


def choose_step(browser: webdriver.Chrome, step_key: str) -> None:
    """Picks a step in the logs view's step menu, as a user does."""
    click(browser, "//input[@placeholder='Select a step…']")
    click(browser, f"//*[@role='dialog']//*[text()='{step_key}']")


def test_a_running_steps_output_shows_live_and_terminate_cancels_its_job_and_the_run_is_not_retried(
    deploy, browser
) -> None:
    d = deploy(webserver=True, retries=True)
    run_id = d.launch("training")
    job = lab.wait_until(lambda: lab.job_of_step(run_id, "train", {"RUNNING"}), 180, what="train running")
    # The UI names a step's log file after the step's LOGS_CAPTURED event: a page opened before
    # that event looked for `train.out` and showed "No log file available" for a minute while the
    # step printed (CI, 2026-11-26); the step's worker takes seconds to start after its job does.
    lab.wait_until(
        lambda: d.instance.get_records_for_run(run_id, of_type=DagsterEventType.LOGS_CAPTURED).records,
        120,
        what="the step's logs captured",
    )

    open_run(browser, d, run_id, "?logType=stdout")
    choose_step(browser, "train")
    # The step prints a line every 2 s for 10 minutes: the open view shows lines it did not have.
    text = wait_for(browser, r"epoch \d+/300: loss")
    last = max(int(n) for n in re.findall(r"epoch (\d+)/300", text))
    wait_for(browser, rf"epoch {last + 3}/300: loss")
    screenshot(browser, "live-stdout")
    assert lab.job_of_step(run_id, "train", {"RUNNING"}) == job, "the lines appeared only after the job ended"
    info = d.instance.run_launcher.get_run_worker_debug_info(d.run(run_id))
    assert f"pid {d.worker_pid(run_id)}" in info and f"{job['job_id']} RUNNING" in info

    # The Terminate button and its confirmation send the UI's terminateRuns mutation.
    click(browser, "//button[.='Terminate']")
    click(browser, "(//*[@role='dialog']//button[contains(., 'Terminate')])[last()]")
    assert d.wait_for_status(run_id, {DagsterRunStatus.CANCELED, DagsterRunStatus.FAILURE}) == DagsterRunStatus.CANCELED
    assert [j["state"].split()[0] for j in lab.jobs_of_step(run_id, "train")] == ["CANCELLED"]
    # The retry daemon acts on RUN_FAILURE events only (dagster/_daemon/auto_run_reexecution/
    # event_log_consumer.py, DAGSTER_EVENT_TYPES), every few seconds: give it three turns.
    time.sleep(15)
    assert d.instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records == []
    assert d.instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": run_id})) == []


def ended_job_table(job: dict[str, str], message: str) -> str:
    """A step's end event as the log table shows it: its message, then its accounting rows."""
    rows = [
        f"Slurm job ID {job['job_id']}",
        "Slurm state COMPLETED",
        "Exit code 0:0",
        f"Node {re.escape(job['node'])}",
        r"Elapsed 0:00:\d\d",
    ]
    # Max RSS is shown once sacct has the job's batch step, which it records a moment after the
    # job: a run whose last step just ended can report that step's job before (CI saw it).
    return rf"Slurm job {job['job_id']} {message}[^\n]*\n" + r"\n".join(rows) + r"(\nMax RSS \d+(\.\d)? MiB)?"


def test_the_run_page_shows_each_steps_slurm_job_state_node_accounting_and_a_failed_steps_cause(
    deploy, browser
) -> None:
    d = deploy(webserver=True)
    run_id = d.launch("prepare_then_fail")
    assert d.wait_for_status(run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}) == DagsterRunStatus.FAILURE
    prepare, load = sorted(lab.settled_jobs_of_run(run_id, 2), key=lambda j: int(j["job_id"]))

    open_run(browser, d, run_id)
    wait_for(
        browser,
        ended_job_table(prepare, r"ended normally\."),
        ended_job_table(load, re.escape("ended normally; the step failed in the op's code")),
        "ValueError: the input table is empty",
    )
    screenshot(browser, "run-page")
