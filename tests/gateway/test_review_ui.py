"""The review pages in a real browser: a reviewer signs in, sees a flagged client's submission, and rejects it.

Headless Chromium is driven through Selenium and ChromeDriver, both from the system packages
(``scripts/system-deps.sh``); Selenium Manager is never asked to download a driver. Without them
the browser tests are skipped, except on CI (``CI=true``), where they fail. The refusals (a
client's key, a forged or expired cookie, a form without its CSRF token) are checked over
plain HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from gateway_live import Served, missing_service, running
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from bastion.data import load_demo
from bastion.gateway import Gateway, load_config
from bastion.gateway.keys import Role, key_id_of
from bastion.gateway.review.session import COOKIE, Sessions
from bastion.gateway.store import Decision, FlagStatus, ItemKind, ItemStatus

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SESSION_SECRET = "review-ui-test-session-secret"
WAIT_SECONDS = 30  # an upper bound for the page to settle, never a timing assertion
DIGITS = load_demo("digits", "test")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One gateway (every guard on) for the whole module: building one calibrates the monitors, which takes a while."""
    db = tmp_path_factory.mktemp("review-ui") / "gateway.db"
    settings = {
        "model.source": "demo:digits",
        "store.url": f"sqlite:///{db}",
        "rate_limit.per_key": ["1000/second"],
        "server.session_secret": SESSION_SECRET,
    }
    with running(Gateway.build(load_config(None, environ={}, overrides=settings))) as served:
        yield served


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """Headless Chromium through the system's ChromeDriver, with a fresh profile."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.is_file():
            missing_service(path.name, f"{path} is not installed (scripts/system-deps.sh installs it)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"):
        options.add_argument(argument)
    options.add_argument("--disable-dev-shm-usage")  # containers often have a tiny /dev/shm
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1400,1200")
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    except WebDriverException as error:
        missing_service("headless Chromium", error.msg or type(error).__name__)
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The browser with no cookies left from an earlier test."""
    browser.delete_all_cookies()
    yield browser
    browser.delete_all_cookies()


def flagged_client_with_a_submission(live: Served, index: int) -> tuple[str, str, str]:
    """A new client offers a labelled example, then sends a near-duplicate burst that the query monitor flags.

    Each ``index`` bursts around a different image, so that the monitor does not link the clients
    of different tests (it would: near-duplicates under several keys are one attacker's).
    Returns the client's key id, the submission id and the flag id.
    """
    secret = live.new_key("client", "suspect")
    client_id = key_id_of(secret)
    assert client_id is not None
    rng = np.random.default_rng(index)
    burst = np.clip(DIGITS.x[10 + index].numpy() + rng.uniform(-0.02, 0.02, size=(25, 1, 8, 8)), 0.0, 1.0)
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        example = {"inputs": DIGITS.x[index : index + 1].numpy().tolist(), "label": int(DIGITS.y[index])}
        offered = client.post("/v1/submissions", json=example)
        assert offered.status_code == 202, offered.text
        assert client.post("/v1/predict", json={"inputs": burst.tolist()}).status_code == 200
    flags = live.gateway.store.list_flags(client=client_id)
    query = [flag for flag in flags if flag.kind == "query"]  # the boundary monitor may flag the burst too
    assert len(query) == 1 and query[0].linked_clients == (), flags
    return client_id, offered.json()["submission_id"], query[0].flag_id


def sign_in(driver: webdriver.Chrome, live: Served, secret: str) -> None:
    """Open the queue, follow the redirect to the sign-in page and sign in with ``secret``; wait for the answer."""
    login = f"{live.url}/review/login"
    driver.get(f"{live.url}/review")
    assert driver.current_url == login
    driver.find_element(By.ID, "api_key").send_keys(secret)
    driver.find_element(By.ID, "sign-in").click()
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda d: d.current_url != login or bool(d.find_elements(By.ID, "login-error"))
    )


def image_loaded(driver: webdriver.Chrome, image: WebElement) -> int:
    """The image's natural width once the browser has finished loading it (0 when it failed to decode)."""
    WebDriverWait(driver, WAIT_SECONDS).until(lambda d: d.execute_script("return arguments[0].complete;", image))
    return int(driver.execute_script("return arguments[0].naturalWidth;", image))


def test_a_reviewer_rejects_a_flagged_clients_submission_in_the_browser(live: Served, page: webdriver.Chrome) -> None:
    client_id, submission_id, flag_id = flagged_client_with_a_submission(live, 0)
    reviewer_id = key_id_of(live.keys["reviewer"])
    sign_in(page, live, live.keys["reviewer"])
    assert page.current_url == f"{live.url}/review"
    assert "test-reviewer" in page.find_element(By.TAG_NAME, "header").text

    flag_row = page.find_element(By.ID, f"flag-{flag_id}")
    assert client_id in flag_row.text and "near_duplicate_queries" in flag_row.text
    row = page.find_element(By.ID, f"submission-{submission_id}")
    cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
    assert (cells[1], cells[3], cells[4]) == (client_id, str(int(DIGITS.y[0])), "quarantined")
    assert cells[5].startswith("yes: ")  # its client is flagged
    assert image_loaded(page, row.find_element(By.CSS_SELECTOR, "img.input")) == 8  # the 8x8 digit itself

    row.find_element(By.NAME, "reason").send_keys("burst of near-duplicate queries")
    row.find_element(By.ID, f"reject-{submission_id}").click()
    notice = WebDriverWait(page, WAIT_SECONDS).until(lambda d: d.find_element(By.ID, "notice"))
    assert notice.text == f"rejected submission {submission_id}"
    assert not page.find_elements(By.ID, f"submission-{submission_id}")  # no longer waiting
    page.get(f"{live.url}/review?done=<b>hacked</b>&kind=submission&item={submission_id}")
    assert not page.find_elements(By.ID, "notice")  # a crafted link cannot put words on the page

    flag_row = page.find_element(By.ID, f"flag-{flag_id}")
    flag_row.find_element(By.NAME, "reason").send_keys("an attack")
    flag_row.find_element(By.ID, f"confirm-{flag_id}").click()
    notice = WebDriverWait(page, WAIT_SECONDS).until(lambda d: d.find_element(By.ID, "notice"))
    assert notice.text == f"confirmed flag {flag_id}"
    assert not page.find_elements(By.ID, f"flag-{flag_id}")  # no longer open

    store = live.gateway.store
    found = store.get_submission(submission_id)
    assert found is not None and found.status is ItemStatus.REJECTED
    decision = next(d for d in store.list_decisions() if d.item_id == submission_id)
    assert (decision.kind, decision.decision) == (ItemKind.SUBMISSION, Decision.REJECT)
    assert (decision.reviewer, decision.reason) == (reviewer_id, "burst of near-duplicate queries")
    live.gateway.recorder.flush()
    events = store.audit_log(client=reviewer_id)
    assert any(e.action == "reject submission" and submission_id in e.detail for e in events)
    request = next(e for e in events if e.action == f"POST /review/submissions/{submission_id}")
    assert (request.endpoint, request.status, request.role) == ("ui.decide", 303, Role.REVIEWER)
    statuses = {flag.flag_id: flag.status for flag in store.list_flags(client=client_id, open_only=False)}
    assert statuses[flag_id] is FlagStatus.CONFIRMED
    assert any(e.action == "confirm flag" and flag_id in e.detail for e in events)


def test_signing_out_ends_the_browser_session(live: Served, page: webdriver.Chrome) -> None:
    sign_in(page, live, live.keys["admin"])
    assert page.current_url == f"{live.url}/review"
    assert page.get_cookie(COOKIE) is not None
    page.find_element(By.XPATH, "//button[text()='Sign out']").click()
    WebDriverWait(page, WAIT_SECONDS).until(lambda d: d.current_url == f"{live.url}/review/login")
    assert page.get_cookie(COOKIE) is None
    page.get(f"{live.url}/review")
    assert page.current_url == f"{live.url}/review/login"


def test_a_clients_key_cannot_sign_in(live: Served, page: webdriver.Chrome) -> None:
    sign_in(page, live, live.keys["client"])
    error = page.find_element(By.ID, "login-error")
    assert "not a reviewer" in error.text
    assert page.current_url == f"{live.url}/review/login"
    assert page.get_cookie(COOKIE) is None
    with httpx.Client(base_url=live.url) as http:
        refused = http.post("/review/login", data={"api_key": live.keys["client"]})
        unknown = http.post("/review/login", data={"api_key": "bst_000000000000_" + "x" * 43})
    assert refused.status_code == unknown.status_code == 401
    assert COOKIE not in refused.cookies and COOKIE not in unknown.cookies


@contextmanager
def signed_in(live: Served, role: str = "reviewer") -> Iterator[httpx.Client]:
    """An HTTP client holding a review session cookie (no redirects followed)."""
    with httpx.Client(base_url=live.url, timeout=30) as http:
        answer = http.post("/review/login", data={"api_key": live.keys[role]})
        assert answer.status_code == 303 and answer.headers["location"] == "/review"
        yield http


def test_without_a_valid_session_cookie_the_pages_send_you_to_sign_in(live: Served) -> None:
    reviewer_id = key_id_of(live.keys["reviewer"])
    assert reviewer_id is not None
    expired = Sessions(SESSION_SECRET, clock=lambda: 0.0).issue(reviewer_id)
    other_secret = Sessions("another gateway's secret").issue(reviewer_id)
    genuine = Sessions(SESSION_SECRET).issue(reviewer_id)
    tampered = genuine.replace(reviewer_id, key_id_of(live.keys["admin"]) or "")
    for cookie in (None, "", "forged", "a.b.c", expired, other_secret, tampered):
        cookies = {COOKIE: cookie} if cookie is not None else {}
        with httpx.Client(base_url=live.url, cookies=cookies) as http:
            for method, path in (("GET", "/review"), ("POST", "/review/logout"), ("POST", f"/review/flags/{'0' * 32}")):
                answer = http.request(method, path, data={"decision": "dismiss"})
                assert answer.status_code == 303, (cookie, path, answer.text)
                assert answer.headers["location"] == "/review/login"
    with httpx.Client(base_url=live.url, cookies={COOKIE: genuine}) as http:
        assert http.get("/review").status_code == 200  # the same cookie, properly signed, is let in


def test_a_revoked_key_loses_its_session(live: Served) -> None:
    secret, key = live.gateway.store.create_key(Role.REVIEWER, "leaving")
    with httpx.Client(base_url=live.url, timeout=30) as http:
        assert http.post("/review/login", data={"api_key": secret}).status_code == 303
        assert http.get("/review").status_code == 200
        live.gateway.store.revoke_key(key.key_id)
        assert http.get("/review").headers["location"] == "/review/login"


def test_a_decision_without_the_sessions_csrf_token_is_refused(live: Served) -> None:
    _, submission_id, _ = flagged_client_with_a_submission(live, 1)
    with signed_in(live) as http, signed_in(live, "admin") as other:
        token = other.get("/review").text.split('name="csrf" value="')[1].split('"')[0]
        path = f"/review/submissions/{submission_id}"
        for form in (
            {"decision": "approve"},
            {"decision": "approve", "csrf": ""},
            {"decision": "approve", "csrf": token},
        ):
            refused = http.post(path, data=form)
            assert refused.status_code == 403, form
            assert refused.json()["error"]["code"] == "bad_csrf_token"
        assert http.post("/review/logout", data={"csrf": token}).status_code == 403
        as_json = http.post(path, json={"decision": "approve", "csrf": token})
        assert as_json.status_code == 415
        assert set(as_json.json()["error"]) >= {"code", "detail"}
    found = live.gateway.store.get_submission(submission_id)
    assert found is not None and found.status is ItemStatus.QUARANTINED
    assert all(d.item_id != submission_id for d in live.gateway.store.list_decisions())
