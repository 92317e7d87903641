"""The shop page in a real browser: a `moonsearch serve` process on a free 127.0.0.1 port over the
sample catalog's index, driven by Debian's chromium through chromedriver (Selenium). Skips with
the reason when chromium, chromedriver or selenium is missing (`.ci/run` installs them)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, SAMPLE_CATALOG

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTEFACTS = REPO / "runs" / "serve-browser"   # gitignored: the screenshots CI keeps


def _skip_reason() -> str | None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "chromium and chromedriver not found (apt-get install chromium chromium-driver; .ci/run does)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(sample_index):
    _, index = sample_index
    port = free_port()
    env = {**os.environ, "MOONSEARCH_SERVE_TOKEN": ""}
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTEFACTS / "server.log"   # kept beside the screenshots: a 500's traceback is there
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moonsearch.cli", "serve", "--index", str(index.folder),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"the server did not start: {log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait(driver, condition, seconds=60):
    """Generous: on a loaded 2-core machine a first search (index, encoder, page) took over 30 s."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.2).until(condition)
    except TimeoutException:
        # say what the page showed instead, and keep a screenshot of it
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTEFACTS / "timeout.png"))
        seen = {name: driver.find_element(By.ID, name).text for name in ("summary", "notice")}
        logs = [e["message"] for e in driver.get_log("browser")][-5:]
        server_log = ARTEFACTS / "server.log"
        errors = [line for line in server_log.read_text(errors="replace").splitlines()
                  if "Error" in line or "unexpected" in line][-6:] if server_log.exists() else []
        raise AssertionError(f"page did not reach the state within {seconds} s; it showed {seen}, "
                             f"{len(cards(driver))} cards; browser log: {logs}; server errors: {errors}") from None


def cards(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#grid .card")


def loaded_images(driver) -> int:
    """Card photos the browser has decoded (in the viewport: the rest load lazily)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#grid .card img')].filter(i => i.complete && i.naturalWidth > 0).length")


def summary_count(driver) -> int:
    from selenium.webdriver.common.by import By

    return int(driver.find_element(By.CSS_SELECTOR, "#summary b").text.split()[0])


def test_shop_page_end_to_end(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(server + "/")
    wait(browser, lambda d: len(cards(d)) > 0)

    # type a query: product cards with photos that load
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys("red dress")
    browser.find_element(By.CSS_SELECTOR, "#search-form .go").click()
    wait(browser, lambda d: "red dress" in d.find_element(By.ID, "summary").text and len(cards(d)) == 24)
    wait(browser, lambda d: loaded_images(d) >= 5)
    titles = [c.find_element(By.CSS_SELECTOR, ".title").text for c in cards(browser)[:3]]
    assert any("Dress" in t for t in titles), titles
    browser.save_screenshot(str(ARTEFACTS / "search.png"))

    # click a facet value: the grid narrows to products that have it
    before = summary_count(browser)
    facet = browser.find_element(By.CSS_SELECTOR, '.facet-value[data-field="articleType"][data-value="Dresses"]')
    facet.click()
    wait(browser, lambda d: summary_count(d) < before)
    wait(browser, lambda d: all("Dresses" in c.text for c in cards(d)) and len(cards(d)) > 0)
    assert summary_count(browser) == 10 and len(cards(browser)) == 10
    assert browser.find_elements(By.CSS_SELECTOR, "#active-filters .chip")
    browser.save_screenshot(str(ARTEFACTS / "facet.png"))
    browser.find_element(By.ID, "clear-filters").click()
    wait(browser, lambda d: summary_count(d) == before)

    # upload a photo through the file picker: results for the photo
    photo = SAMPLE_CATALOG / "images" / "S0013.jpg"
    browser.find_element(By.ID, "q").clear()
    browser.execute_script("document.getElementById('q').value = ''")
    browser.find_element(By.ID, "photo").send_keys(str(photo))
    wait(browser, lambda d: "your photo" in d.find_element(By.ID, "summary").text and len(cards(d)) > 0)
    assert browser.find_element(By.ID, "photo-chip").is_displayed()
    wait(browser, lambda d: loaded_images(d) >= 5)
    browser.save_screenshot(str(ARTEFACTS / "photo.png"))

    # open a product: its view lists similar products
    first = cards(browser)[0]
    product_id = first.get_attribute("data-id")
    first.click()
    wait(browser, lambda d: d.find_element(By.ID, "product-view").is_displayed())
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#pv-similar .card")) == 8)
    similar = [c.get_attribute("data-id") for c in browser.find_elements(By.CSS_SELECTOR, "#pv-similar .card")]
    assert product_id not in similar
    assert browser.find_element(By.ID, "pv-title").text
    browser.save_screenshot(str(ARTEFACTS / "product.png"))
    shutil.copy(ARTEFACTS / "product.png", tmp_path / "product.png")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
