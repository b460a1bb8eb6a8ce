"""The dashboard in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`, which .ci/run
installs when missing) driven by Selenium against the running local stack, opened with the URL `retrain keys
--json` prints.

One stack and one browser for the module. The first model comes from `retrain upload --wait`; the fixture
`second_model_seen` uploads a second dataset while the page is open and waits for v2 to appear; `rolled_back`
promotes v2 if the gate kept it out, then rolls back. Each test asks for what it needs, so it passes alone and in
any order. A screenshot of the page is saved (DASHBOARD_SCREENSHOT=PATH saves it there too: how the docs' picture
is made).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pandas as pd
import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from shared.adapters import storage
from shared.services.dashboard import REPLAY_BLOB
from shared.settings import Settings
from tests.e2e.api_stack import run_cli, start_api_stack

pytestmark = pytest.mark.e2e
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
LOOP_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_api_stack(tmp_path_factory.mktemp("dashboard"), COALESCE_S="0")
    yield s
    s.stop()


def retrain(stack, *argv: str, timeout: float = LOOP_TIMEOUT_S) -> subprocess.CompletedProcess:
    proc = run_cli(stack, *argv, timeout=timeout)
    assert proc.returncode == 0, f"retrain {' '.join(argv)}: {proc.stdout}{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def keys(stack) -> dict:
    return json.loads(retrain(stack, "keys", "--json").stdout)


@pytest.fixture(scope="module")
def first_model(stack, small_bank_csv):
    retrain(stack, "upload", str(small_bank_csv), "--name", f"first-{uuid.uuid4().hex[:6]}.csv", "--wait", "--json",
            "--timeout-s", str(LOOP_TIMEOUT_S - 30))
    return 1


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: `apt-get install chromium chromium-driver` (.ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # as the environment's probe starts it: no background traffic to hosts this closed network refuses
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = 30, message: str = ""):
    return WebDriverWait(driver, timeout, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition, message)


@pytest.fixture(scope="module")
def page(browser, keys, first_model):
    """The dashboard, opened once with the printed URL, loaded (live model shown)."""
    browser.get(keys["dashboard_url"])
    wait(browser, lambda d: d.find_element(By.ID, "live-version").text == "v1", message="live model v1 shown")
    return browser


def show_tab(driver, name: str) -> None:
    driver.find_element(By.ID, f"tab-{name}").click()
    wait(driver, lambda d: d.find_element(By.ID, f"panel-{name}").is_displayed())


def model_rows(driver) -> dict[str, str]:
    """Version -> state as the Models table shows them (its text content: the panel may be hidden)."""
    def text(cell) -> str:
        return (cell.get_attribute("textContent") or "").strip()
    rows = driver.find_elements(By.CSS_SELECTOR, "#models-body tbody tr")
    return {text(r.find_elements(By.TAG_NAME, "td")[0]): text(r.find_elements(By.TAG_NAME, "td")[1]) for r in rows}


@pytest.fixture(scope="module")
def second_model_seen(page, stack, small_bank_csv, tmp_path_factory):
    """Upload a second dataset while the page is open; v2 appears in the Models table without a reload."""
    page.execute_script("window.__sameDocument = 'yes';")  # gone if the page reloads
    show_tab(page, "models")
    second = tmp_path_factory.mktemp("second") / "second.csv"
    frame = pd.read_csv(small_bank_csv)
    frame.iloc[: len(frame) * 9 // 10].to_csv(second, index=False)  # other rows: a new dataset version
    retrain(stack, "upload", str(second), "--name", f"second-{uuid.uuid4().hex[:6]}.csv")
    wait(page, lambda d: "v2" in model_rows(d), timeout=LOOP_TIMEOUT_S, message="model v2 never appeared")
    return page.execute_script("return window.__sameDocument;")


@pytest.fixture(scope="module")
def rolled_back(second_model_seen, page, stack):
    """v2 live (promoted by hand if the gate kept it out), then `retrain rollback`."""
    wait(page, lambda d: model_rows(d).get("v2") in ("live", "kept out", "registered", "rolled back"),
         timeout=LOOP_TIMEOUT_S)
    models = requests.get(f"{stack.config.host_url}/api/models", timeout=30,
                          headers={"x-functions-key": stack.host_keys.function_keys["default"]}).json()
    if models["live"] != 2:
        retrain(stack, "promote", "2")
    retrain(stack, "rollback")
    return page


def test_a_new_model_version_appears_without_a_reload(second_model_seen, page):
    assert second_model_seen == "yes", "the page reloaded to show v2"
    assert set(model_rows(page)) >= {"v1", "v2"}


def test_a_rolled_back_deploy_shows_as_rolled_back(rolled_back):
    page = rolled_back
    show_tab(page, "models")
    wait(page, lambda d: model_rows(d).get("v2") == "rolled back", message="v2 not shown as rolled back")
    assert model_rows(page)["v1"] == "live"
    assert page.find_element(By.ID, "live-version").text == "v1"
    show_tab(page, "timeline")
    first = page.find_element(By.CSS_SELECTOR, "#timeline-body tbody tr")
    cells = [c.text for c in first.find_elements(By.TAG_NAME, "td")]
    assert cells[1:3] == ["rollback", "rolled back"] and cells[5] == "v1"


def test_the_quality_chart_has_a_point_per_model_and_the_replay_chart_a_point_per_period(page, stack):
    show_tab(page, "quality")
    key = {"x-functions-key": stack.host_keys.function_keys["default"]}

    def points_match(d) -> bool:  # the chart and the API agree (models may be added meanwhile: wait until equal)
        models = requests.get(f"{stack.config.host_url}/api/models", headers=key, timeout=30).json()["models"]
        dots = d.find_elements(By.CSS_SELECTOR, '#chart-models circle[data-series="held-out AUC"]')
        return len(dots) == len([m for m in models if m["metrics"].get("auc") is not None]) >= 1
    wait(page, points_match, message="held-out AUC points differ from the registered models")
    periods = [{"period": k, "rows": 100, "live_version": 1, "ours_auc": 0.8 + k / 100, "static_auc": 0.8,
                "lightgbm_auc": None if k == 7 else 0.82} for k in (5, 6, 7, 8)]
    blobs = storage.blob_service(Settings(storage_connection=stack.config.connection_string))
    blobs.get_blob_client(Settings().reports_container, REPLAY_BLOB).upload_blob(
        json.dumps({"summary": {"periods": 4}, "periods": periods}), overwrite=True)
    chart = wait(page, lambda d: d.find_elements(By.ID, "chart-replay"), message="no replay chart")[0]
    series = [c.get_attribute("data-series") for c in chart.find_elements(By.CSS_SELECTOR, "circle.point")]
    assert series.count("live model (ours)") == 4 and series.count("first model, never retrained") == 4
    assert series.count("default LightGBM retrained") == 3  # a period without a figure has no point


def test_tabs_work_from_the_keyboard_and_every_part_is_labelled(page):
    show_tab(page, "timeline")
    tab = page.find_element(By.ID, "tab-timeline")
    tab.send_keys(Keys.ARROW_RIGHT)
    active = page.switch_to.active_element
    assert active.get_attribute("id") == "tab-models" and active.get_attribute("aria-selected") == "true"
    assert page.find_element(By.ID, "panel-models").is_displayed()
    assert not page.find_element(By.ID, "panel-timeline").is_displayed()
    active.send_keys(Keys.END)
    assert page.switch_to.active_element.get_attribute("id") == "tab-outbox"
    page.switch_to.active_element.send_keys(Keys.HOME)
    assert page.switch_to.active_element.get_attribute("id") == "tab-timeline"
    page.switch_to.active_element.send_keys(Keys.TAB)  # into the selected panel, not the other tabs
    assert page.switch_to.active_element.get_attribute("id") == "panel-timeline"
    tabs = page.find_elements(By.CSS_SELECTOR, '[role="tab"]')
    assert [t.get_attribute("tabindex") for t in tabs].count("0") == 1  # one tab stop for the tab list
    for t in tabs:
        panel = page.find_element(By.ID, t.get_attribute("aria-controls"))
        assert t.text and panel.get_attribute("aria-labelledby") == t.get_attribute("id")
    assert page.find_element(By.CSS_SELECTOR, '[role="tablist"]').get_attribute("aria-label")
    assert page.find_element(By.ID, "status").get_attribute("aria-live") == "polite"
    for name in ("timeline", "models", "quality", "drift", "outbox"):
        show_tab(page, name)
        for table in page.find_elements(By.CSS_SELECTOR, f"#panel-{name} table"):
            assert table.find_element(By.TAG_NAME, "caption").text
            assert all(th.get_attribute("scope") == "col" for th in table.find_elements(By.TAG_NAME, "th"))
        for chart in page.find_elements(By.CSS_SELECTOR, f"#panel-{name} svg"):
            title = page.find_element(By.ID, chart.get_attribute("aria-labelledby"))
            assert chart.get_attribute("role") == "img" and title.get_attribute("textContent")


def test_the_page_loads_nothing_from_outside_and_its_script_has_no_errors(page):
    urls = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    origin = page.execute_script("return location.origin;")
    assert urls and all(u.startswith(origin + "/api/") for u in urls), urls
    try:
        logs = page.get_log("browser")
    except WebDriverException:  # a driver without the log endpoint: the resource check above still stands
        logs = []
    assert not [e for e in logs if e.get("level") == "SEVERE"], logs


def test_a_screenshot_of_the_page_is_saved(rolled_back, tmp_path):
    page = rolled_back
    show_tab(page, "timeline")
    wait(page, lambda d: "rolled back" in d.find_element(By.ID, "timeline-body").text)
    shot = tmp_path / "dashboard.png"
    assert page.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("DASHBOARD_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["DASHBOARD_SCREENSHOT"])
