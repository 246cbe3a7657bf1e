"""What a user sees in the Dagster UI, opened in headless Chromium (Debian's, through Selenium):
the run page of a deployment whose steps ran on Slurm. Screenshots go to the lab's folder."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterRunStatus
from dagster._core.events import DagsterEventType
from dagster._core.storage.dagster_run import RunsFilter
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests import lab
from tests.deployment import Deployment

pytestmark = pytest.mark.lab

SCREENSHOTS = lab.lab_dir() / "screenshots"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    # --no-sandbox: the suite runs as root, where Chromium refuses its sandbox.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1400"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        yield driver
    finally:
        driver.quit()


def page_text(browser: webdriver.Chrome) -> str:
    return browser.find_element(By.TAG_NAME, "body").text


def wait_for_text(browser: webdriver.Chrome, *texts: str, timeout: float = 60) -> str:
    def shown() -> str | None:
        text = page_text(browser)
        return text if all(t in text for t in texts) else None

    try:
        return lab.wait_until(shown, timeout, what=f"{texts} on {browser.current_url}")
    except AssertionError:
        screenshot(browser, "failed-wait")
        raise


def screenshot(browser: webdriver.Chrome, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    browser.save_screenshot(str(path))
    return path


def open_run(browser: webdriver.Chrome, d: Deployment, run_id: str, query: str = "") -> None:
    browser.get(f"{d.webserver_url}/runs/{run_id}{query}")
    # A new browser is first asked to join the community: skip it, as a user would.
    skip = lab.wait_until(lambda: browser.find_elements(By.XPATH, "//button[.='Skip']"), 30, what="the first dialog")
    skip[0].click()


def choose_step(browser: webdriver.Chrome, step_key: str) -> None:
    """Picks a step in the logs view's step menu, as a user does."""
    browser.find_element(By.CSS_SELECTOR, "input[placeholder='Select a step…']").click()
    option = lab.wait_until(
        lambda: browser.find_elements(By.XPATH, f"//*[@role='dialog']//*[text()='{step_key}']"),
        30,
        what=f"{step_key} in the step menu",
    )
    option[0].click()


def test_a_running_steps_output_shows_live_and_terminate_cancels_its_job_and_the_run_is_not_retried(
    deploy, browser
) -> None:
    d = deploy(webserver=True, retries=True)
    run_id = d.launch("training")
    job = lab.wait_until(lambda: lab.job_of_step(run_id, "train", {"RUNNING"}), 180, what="train running")

    open_run(browser, d, run_id, "?logType=stdout")
    choose_step(browser, "train")
    # The step prints a line every 2 s for 40 s: the view follows it while its job runs.
    wait_for_text(browser, "epoch 1/20: loss 1.000", timeout=60)
    wait_for_text(browser, "epoch 5/20: loss 0.200", timeout=60)
    screenshot(browser, "live-stdout")
    assert lab.job_of_step(run_id, "train", {"RUNNING"}) == job, "the lines appeared only after the job ended"
    info = d.instance.run_launcher.get_run_worker_debug_info(d.run(run_id))
    assert f"pid {d.worker_pid(run_id)}" in info and f"{job['job_id']} RUNNING" in info

    # The Terminate button and its confirmation send the UI's terminateRuns mutation.
    browser.find_element(By.XPATH, "//button[.='Terminate']").click()
    confirm = lab.wait_until(
        lambda: browser.find_elements(By.XPATH, "//*[@role='dialog']//button[contains(., 'Terminate')]"),
        30,
        what="the confirmation",
    )
    confirm[-1].click()
    assert d.wait_for_status(run_id, {DagsterRunStatus.CANCELED, DagsterRunStatus.FAILURE}) == DagsterRunStatus.CANCELED
    assert [j["state"].split()[0] for j in lab.jobs_of_step(run_id, "train")] == ["CANCELLED"]
    # The retry daemon acts on RUN_FAILURE events only (dagster/_daemon/auto_run_reexecution/
    # event_log_consumer.py, DAGSTER_EVENT_TYPES): a canceled run records none, so none is retried.
    assert d.instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records == []
    assert d.instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": run_id})) == []


def test_the_run_page_shows_each_steps_slurm_job_state_node_accounting_and_a_failed_steps_cause(
    deploy, browser
) -> None:
    d = deploy(webserver=True)
    run_id = d.launch("prepare_then_fail")
    assert d.wait_for_status(run_id, {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}) == DagsterRunStatus.FAILURE
    prepare, load = sorted(lab.settled_jobs_of_run(run_id, 2), key=lambda j: int(j["job_id"]))

    open_run(browser, d, run_id)
    text = wait_for_text(
        browser,
        *(f"Slurm job ID {j['job_id']}" for j in (prepare, load)),
        f"Node {prepare['node']}",
        "Slurm state COMPLETED",
        "Elapsed 0:00:",
        "Max RSS",
        "ValueError: the input table is empty",
        f"Slurm job {load['job_id']} ended normally; the step failed in the op's code",
    )
    screenshot(browser, "run-page")
    assert f"Slurm job {prepare['job_id']} ended normally." in text
