"""The web console in a real browser: Debian's Chromium driven by Selenium through /usr/bin/chromedriver,
against the running service on the shared models and photos. One browser session serves the module; each test
walks one flow end to end. Screenshots of every page land in reports/console/ (git-ignored) for a person to
look at, and every page photographed is checked with axe-core (tests/axe.py): no serious or critical violation.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import time
from pathlib import Path

import pytest

from tests import axe

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "reports" / "console"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "media-src 'self' blob:; frame-ancestors 'none'")
WAIT_S = 60  # enrolment and search run the real models on 2 busy cores


@pytest.fixture(scope="module")
def admin_token(app, data_dir, http) -> str:
    http.get("/v1/readyz")  # the TenantSupervisor has started and written the token
    return (data_dir / "admin_token").read_text().strip()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not exe.is_file():
            pytest.fail(f"{exe} is missing: `make system-deps` installs Debian's chromium and chromium-driver", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def no_download(*_, **__):
        raise AssertionError("selenium-manager was asked for a driver: nothing may be downloaded in tests")

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000",
                 # a camera for getUserMedia: Chromium's built-in test pattern, allowed without a prompt
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SeleniumManager, "binary_paths", no_download)
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def axe_source() -> str:
    return axe.axe_source()


class Console:
    """The browser, with the few moves the flow needs."""

    def __init__(self, driver, base_url: str, axe_source: str) -> None:
        self.axe_source = axe_source
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.base_url = driver, base_url
        # Pages re-render parts of themselves: an element found a moment ago may be gone; look again.
        self.wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException])

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def until(self, css: str, text: str | None = None):
        """The first visible element matching css (and containing text), waiting for it."""
        def found(_):
            for el in self.all(css):
                if el.is_displayed() and (text is None or text in el.text):
                    return el
            return False
        return self.wait.until(found, f"no visible {css!r}" + (f" with {text!r}" if text else ""))

    def read(self, css: str, *parts: str, text: str | None = None) -> list[list[str]]:
        """For each part (a selector inside the first visible css element), the texts of what it matches, all
        read in one go: the page may re-render the element between finding it and reading inside it, and a
        stale read is read again rather than failing."""
        from selenium.webdriver.common.by import By

        def found(_):
            for el in self.all(css):
                if el.is_displayed() and (text is None or text in el.text):
                    return [[p.text for p in el.find_elements(By.CSS_SELECTOR, part)] for part in parts]
            return False
        return self.wait.until(found, f"no visible {css!r}" + (f" with {text!r}" if text else ""))

    def type(self, css: str, value: str) -> None:
        el = self.until(css)
        el.clear()
        el.send_keys(value)

    def go(self, page: str):
        self.until(f"#nav-{page}").click()
        return self.until(f"#page-{page}")

    def upload(self, css: str, *paths: Path) -> None:
        self.find(css).send_keys("\n".join(str(p) for p in paths))

    def drop(self, css: str, path: Path, media_type: str = "image/jpeg") -> None:
        """Drops the file on the element the way a drag from the desktop does (dragover, then drop)."""
        self.driver.execute_script("""
            const [css, name, b64, type] = arguments;
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type }));
            const zone = document.querySelector(css);
            for (const kind of ["dragenter", "dragover", "drop"])
                zone.dispatchEvent(new DragEvent(kind, { bubbles: true, cancelable: true, dataTransfer: transfer }));""",
            css, path.name, base64.b64encode(path.read_bytes()).decode(), media_type)

    def button(self, within: str, text: str):
        from selenium.webdriver.common.by import By

        return self.wait.until(lambda d: next((b for b in d.find_elements(By.CSS_SELECTOR, f"{within} button")
                                               if b.is_displayed() and b.is_enabled() and b.text == text), False),
                               f"an enabled button {text!r}")

    def storage(self) -> dict:
        return self.driver.execute_script(
            "const dump = (s) => Object.fromEntries(Object.keys(s).map((k) => [k, s.getItem(k)]));"
            "return {session: dump(sessionStorage), local: dump(localStorage)};")

    def unlabelled(self) -> list[str]:
        """Controls on the page without an accessible name (a label, aria-label(ledby), or a button's text)."""
        return self.driver.execute_script("""
            const named = (el) => (el.labels && el.labels.length) || el.getAttribute("aria-label") ||
                el.getAttribute("aria-labelledby") || (el.tagName === "BUTTON" && el.textContent.trim());
            return [...document.querySelectorAll("input, select, textarea, button")]
                .filter((el) => el.type !== "hidden" && !named(el)).map((el) => el.outerHTML.slice(0, 120));""")

    def shot(self, name: str) -> Path:
        """The whole page, not just the window (Chromium's own full-page capture over DevTools); every page
        photographed is also checked for unlabelled controls and by axe-core."""
        assert self.unlabelled() == [], (name, self.unlabelled())
        assert axe.violations(self.driver, self.axe_source) == [], name
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        picture = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        path = SHOTS / f"{name}.png"
        path.write_bytes(base64.b64decode(picture["data"]))
        return path

    def sign_in(self, kind: str, token: str) -> None:
        self.until("#sign-in-form")
        self.find(f"#kind-{kind}").click()
        self.type("#credential", token)
        self.find("#sign-in").click()
        self.until("#sign-out")


def test_console_files_are_served_with_a_strict_csp(http):
    r = http.get("/console", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "console/"
    page = http.get("/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP
    assert "<script" in page.text and "<script>" not in page.text and "style=" not in page.text  # nothing inline
    module = http.get("/console/js/main.js")
    assert module.headers["content-type"].startswith("text/javascript") and module.headers["x-content-type-options"] == "nosniff"
    for outside in ("/console/../graph.py", "/console/%2e%2e/graph.py", "/console/__init__.py", "/console/nope.js"):
        r = http.get(outside)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", outside


def test_every_console_file_ships_in_the_package():
    """pyproject's package-data globs cover every file the route serves (a new folder needs a new glob)."""
    import fnmatch
    import tomllib

    import console

    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["console"]
    assert {"index.html", "console.css", "js/main.js"} <= set(console.FILES)
    missed = [name for name in console.FILES
              if not any(fnmatch.fnmatchcase(name, g) and name.count("/") == g.count("/") for g in globs)]
    assert missed == []


def test_console_flow_in_a_real_browser(browser, app, http, admin_token, identity_photos, faces_root, tmp_path, axe_source):
    console = Console(browser, app[1], axe_source)
    browser.get(f"{app[1]}/console")
    assert browser.current_url.endswith("/console/")
    console.until("#sign-in-form")
    console.shot("01-sign-in")

    # ---- admin: wrong token refused with the API's own error, then the real one ----------------------------
    console.until("#sign-in-form")
    console.find("#kind-admin").click()
    console.type("#credential", "not-the-token")
    console.find("#sign-in").click()
    assert console.read("#sign-in-form .error", ".code") == [["forbidden"]]
    assert console.storage()["session"] == {}

    console.sign_in("admin", admin_token)
    console.until("#page-admin")
    console.until("#signed-in-as", "Admin key bootstrap")
    stored = json.loads(console.storage()["session"]["securegate.credential"])
    assert stored == {"kind": "admin", "token": admin_token} and console.storage()["local"] == {}
    assert admin_token not in browser.current_url

    tenant_name = f"console-{secrets.token_hex(3)}"
    console.type("#tenant-name", tenant_name)
    console.find("#create-tenant").click()
    api_key = console.until("#new-api-key").get_attribute("value")
    assert api_key.startswith("sg_")
    console.until("#tenant-list td", tenant_name)
    console.until("#key-status", "Provider")
    console.until("#health dd.state-ok", "ready")
    console.shot("02-admin")
    console.find(f"#tenant-list button[aria-label='Settings ({tenant_name})']").click()
    settings = console.until("#settings-json")
    assert json.loads(settings.get_attribute("value"))["match_on"] == "faces"
    settings.clear()
    settings.send_keys('{"retention_days": 30}')
    settings.submit()
    console.until("#tenant-editor .ok", "Saved")
    tenant_id = console.until("#shown-once .shown-once").get_attribute("data-tenant")
    saved = http.get(f"/v1/tenants/{tenant_id}", headers={"Authorization": f"Bearer {admin_token}"}).json()["settings"]
    assert saved["retention_days"] == 30 and saved["match_on"] == "faces"
    # the key shown is a working key of that tenant
    assert http.get("/v1/persons", headers={"Authorization": f"Bearer {api_key}"}).status_code == 200

    console.find("#sign-out").click()
    console.until("#sign-in-form")
    assert console.storage() == {"session": {}, "local": {}}

    # ---- tenant: people, enrolment, a refused non-image ----------------------------------------------------
    console.sign_in("tenant", api_key)
    console.until("#page-people")
    persons = {}
    for who in ("kit_harington", "rose_leslie"):
        console.type("#new-external-id", who)
        console.find("#create-person").click()
        console.until("#person-detail h2", who)
        persons[who] = console.until("#person-id").text
        console.upload("input[name=enrol-photo]", identity_photos[who][0])
        console.until("#enrol-status .ok", "Enrolled")
        assert len(console.all("#person-detail td[data-col=face_id]")) == 1

    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("these are meeting notes, not a photo\n")
    console.upload("input[name=enrol-photo]", not_an_image)
    (code,), (message,) = console.read("#enrol-status .error", ".code", ".message")
    api = http.post(f"/v1/persons/{persons['rose_leslie']}/faces", json={"image": base64.b64encode(not_an_image.read_bytes()).decode()},
                    headers={"Authorization": f"Bearer {api_key}"}).json()["error"]
    assert code == api["code"] == "invalid_image"
    assert message == api["message"]
    # A photo whose face is too small and blurry: the quality gates' reasons are shown, each by name.
    import cv2

    small = tmp_path / "kit_small.jpg"
    photo = cv2.imread(str(identity_photos["kit_harington"][0]))
    cv2.imwrite(str(small), cv2.resize(photo, None, fx=0.15, fy=0.15, interpolation=cv2.INTER_AREA))
    console.upload("input[name=enrol-photo]", small)
    (reasons,) = console.read("#enrol-status .error[data-code=low_quality]", ".reasons li")
    assert any(r.startswith("face too small (face_size:") for r in reasons), reasons

    # The device camera (Chromium's test pattern: no face in it): a frame is taken and refused by the API.
    console.button("#person-detail", "Use camera").click()
    console.until("#person-detail video.camera")
    console.button("#person-detail", "Take photo").click()
    assert console.read("#enrol-status .error[data-code=no_face]", ".message") == [["no face found in image"]]
    brightness = console.driver.execute_script("""
        const img = document.querySelector("#person-detail img.preview");
        const c = document.createElement("canvas"); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext("2d"); g.drawImage(img, 0, 0);
        const px = g.getImageData(0, 0, c.width, c.height).data; let sum = 0;
        for (let i = 0; i < px.length; i += 4) sum += px[i] + px[i + 1] + px[i + 2];
        return sum / (px.length / 4 * 3);""")
    assert brightness > 20, brightness  # the frame sent is the camera's picture, not a black first frame
    console.button("#person-detail", "Stop camera").click()
    console.shot("03-people")

    from selenium.webdriver.common.keys import Keys

    console.type("#person-query", "rose")  # exact ids only (the API's blind index): a part finds nobody
    console.find("#person-query").send_keys(Keys.ENTER)
    console.until("#person-list .empty", "No persons found")
    console.type("#person-query", "rose_leslie")
    console.find("#person-query").send_keys(Keys.ENTER)
    console.wait.until(lambda _: [td.text for td in console.all("#person-list td[data-col=external_id]")] == ["rose_leslie"])
    console.until("#person-detail h2", "rose_leslie")  # the one person found opens

    # ---- identify: the right name on the right box -------------------------------------------------------
    console.go("identify")
    console.upload("input[name=identify-photo]", faces_root / "scenes" / "kit_with_rose.jpg")
    console.wait.until(lambda _: len([b for b in console.all(".box") if b.is_displayed()]) == 2)
    image = console.find("#identify-image").rect
    where = {}
    for box in console.all(".box"):
        r = box.rect
        where[box.get_attribute("data-name")] = ((r["x"] + r["width"] / 2 - image["x"]) / image["width"],
                                                  (r["y"] + r["height"] / 2 - image["y"]) / image["height"])
        assert box.get_attribute("data-name") in box.text
    # In the photo Rose Leslie stands on the left, Kit Harington on the right; both faces in the top third.
    assert set(where) == {"kit_harington", "rose_leslie"}, where
    assert where["rose_leslie"][0] < 0.45 < 0.5 < where["kit_harington"][0], where
    assert all(y < 0.35 for _, y in where.values()), where
    console.shot("04-identify")
    shutil.copyfile(SHOTS / "04-identify.png", SHOTS / "identify.png")

    console.find("#threshold").send_keys(Keys.END)  # the keyboard moves the slider to 1.00: nobody reaches it
    console.wait.until(lambda _: [b.get_attribute("data-name") for b in console.all(".box")] == ["unknown", "unknown"])
    assert console.find("#threshold-value").text == "1.00"
    console.shot("04b-identify-threshold")

    # ---- verify, audit, cameras, calibration ------------------------------------------------------------
    console.go("verify")
    kit = identity_photos["kit_harington"]
    console.upload("input[name=verify-a]", kit[0])
    console.drop(".pair .side:nth-child(2) .dropzone", kit[1])  # the second photo dragged in
    assert console.until("#verdict").text.startswith("Same person")
    console.shot("05-verify")

    console.go("audit")
    console.until("#audit-list td[data-col=action]", "face.enrol")
    console.find("#verify-audit").click()
    console.until("#audit-verdict .verdict", "Intact: this tenant's audit")
    console.shot("06-audit")

    console.go("cameras")
    tenant_auth = {"Authorization": f"Bearer {api_key}"}
    if http.get("/v1/streams", headers=tenant_auth).status_code == 404:  # a server without cameras
        console.until("#cameras-unavailable", "not available")
    else:
        cameras_flow(console, http, tenant_auth, identity_photos, tmp_path / "downloads")
    console.shot("07-cameras")

    console.go("calibration")
    report = REPO / "docs" / "eval"
    console.upload("#report-files", report / "report.json", report / "det.png", report / "histogram.png")
    console.until("#report-facts", "EER")
    console.wait.until(lambda _: len(console.all("img.report-image")) == 2 and all(
        browser.execute_script("return arguments[0].naturalWidth", img) > 0 for img in console.all("img.report-image")))
    console.shot("08-calibration")

    # ---- tablet width: no page is wider than the screen ----------------------------------------------
    browser.set_window_size(800, 1100)
    for page in ("people", "identify", "verify", "cameras", "audit", "calibration"):
        console.go(page)
        assert browser.execute_script("return document.documentElement.scrollWidth <= document.documentElement.clientWidth"), page
    console.go("people")
    console.until("#person-list td")
    assert browser.execute_script("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    console.shot("09-people-tablet")
    browser.set_window_size(1280, 1000)

    # ---- sign out: the key is gone from storage ---------------------------------------------------------
    console.find("#sign-out").click()
    console.until("#sign-in-form")
    after = console.storage()
    assert after == {"session": {}, "local": {}} and api_key not in json.dumps(after)
    assert api_key not in browser.current_url

    # ---- admin deletes the tenant: the confirmation names what is destroyed -----------------------------
    # Signed in with a named admin key holding every scope (the first sign-in used the bootstrap token).
    scopes = ["tenants:read", "tenants:write", "keys:read", "keys:rotate", "audit:read", "admin-keys:read", "admin-keys:write"]
    r = http.post("/v1/admin-keys", json={"name": f"console-{secrets.token_hex(3)}", "scopes": scopes},
                  headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 201, r.text
    console.sign_in("admin", r.json()["admin_key"])
    console.until("#signed-in-as", f"Admin key {r.json()['name']}")
    console.until("#tenant-list td", tenant_name)
    console.find(f"#tenant-list button[aria-label='Rotate data key ({tenant_name})']").click()
    console.until("#key-status .rotations li[data-state=done]", tenant_id)  # the live key status shows it through
    console.find(f"#tenant-list button[aria-label='Delete ({tenant_name})']").click()
    dialog = console.until("dialog.confirm")
    assert tenant_name in dialog.text and "encryption keys" in dialog.text and "every person" in dialog.text
    console.shot("10-admin-delete-confirmation")
    dialog.find_element("css selector", "button.danger").click()
    console.until("#page-admin .ok", f"Tenant {tenant_name} deleted")
    assert http.get("/v1/persons", headers=tenant_auth).json()["error"]["code"] == "unauthenticated"
    console.find("#sign-out").click()
    console.until("#sign-in-form")

    # The console never broke its own CSP (Chromium logs every refused inline script or style).
    # Nor threw an uncaught error. (Refused API calls log "Failed to load resource": those are the test's own.)
    log = [e["message"] for e in browser.get_log("browser")]
    assert [m for m in log if "Content Security Policy" in m or "Uncaught" in m] == []


def cameras_flow(console, http, tenant_auth, identity_photos, downloads: Path) -> None:
    """A camera added in the console; an edge device pushes frames of an enrolled person, then of a stranger:
    both reach the live wall over SSE, the stranger is promoted to a person, attendance lists the person."""
    import time

    console.type("#camera-name", "front door")
    console.find("#add-camera").click()
    console.until("#camera-list td[data-col=name]", "front door")
    console.until("#camera-list td[data-col=source]", "push")
    (stream,) = [s for s in http.get("/v1/streams", headers=tenant_auth).json()["streams"] if s["name"] == "front door"]
    console.until("#wall-state", "live")
    origin = time.time()
    for i, photo in enumerate([identity_photos["kit_harington"][0]] * 8 + [identity_photos["obama"][0]] * 8):
        if i == 8:
            time.sleep(1.5)  # the first face leaves the picture before the next one comes
        r = http.post(f"/v1/streams/{stream['stream_id']}/frames", params={"ts": origin + i * 0.2}, content=photo.read_bytes(),
                      headers={**tenant_auth, "Content-Type": "image/jpeg"})
        assert r.status_code == 202, r.text
        time.sleep(0.2)
    console.until("#event-wall li[data-kind=person_seen][data-who=kit_harington]", "front door")
    stranger = console.until("#event-wall li[data-kind=unknown_seen]", "front door").get_attribute("data-who")
    # each camera's state, frames read / processed / dropped, and lag
    frames = console.until("#camera-list td[data-col=frames]").text
    assert int(frames.split(" / ")[1]) > 0, frames
    console.until("#camera-list td[data-col=state]", "")

    # "not this person" on the person's event: the event keeps no face, so a photo of the face is asked for
    kit = http.get("/v1/persons", params={"external_id": "kit_harington"}, headers=tenant_auth).json()["persons"][0]
    console.find("#event-wall li[data-kind=person_seen] button.not-them").click()
    console.until("#event-wall li[data-kind=person_seen] .inline-ask", "keeps no face")
    console.upload("#event-wall li[data-kind=person_seen] input[type=file]", identity_photos["biden"][0])
    console.until("dialog.confirm", "Not kit_harington?").find_element("css selector", "button.primary").click()
    console.until("#page-cameras .ok", "1 rejection(s) added to kit_harington")
    # and on the stranger's event: their camera samples must never match kit
    console.find(f"#event-wall li[data-who='{stranger}'] summary").click()
    console.type(f"#event-wall li[data-who='{stranger}'] input.not-id", "kit_harington")
    console.find(f"#event-wall li[data-who='{stranger}'] form button").click()
    console.until("dialog.confirm", "Not kit_harington?").find_element("css selector", "button.primary").click()
    console.until("#page-cameras .ok", f"of kit_harington from unknown {stranger}")
    sources = [r["source"] for r in http.get(f"/v1/persons/{kit['person_id']}/rejections", headers=tenant_auth).json()["rejections"]]
    assert sources[0] == "image" and set(sources[1:]) == {"unknown"}, sources

    # The feed drops and cannot come back at once: the page is opened with feed connections of 3 s (the
    # console's feed_max_s) and the browser goes offline (DevTools). An event made meanwhile arrives after the
    # reconnection, which resumes with Last-Event-ID (the wall is not re-read from the log in between).
    console.driver.get(f"{console.base_url}/console/?feed_max_s=3#/cameras")
    state = console.until("#wall-state", "live")
    console.until(f"#event-wall li[data-who='{stranger}']")
    offline = {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
    console.driver.execute_cdp_cmd("Network.enable", {})
    console.driver.execute_cdp_cmd("Network.emulateNetworkConditions", offline)
    try:
        console.until("#wall-state", "reconnecting")
        seen = {e["seq"] for e in http.get("/v1/events", params={"limit": 1000}, headers=tenant_auth).json()["events"]}
        origin = time.time()
        for i, photo in enumerate([identity_photos["biden"][0]] * 6):
            r = http.post(f"/v1/streams/{stream['stream_id']}/frames", params={"ts": origin + i * 0.2}, content=photo.read_bytes(),
                          headers={**tenant_auth, "Content-Type": "image/jpeg"})
            assert r.status_code == 202, r.text
            time.sleep(0.2)
        new = console.wait.until(lambda _: sorted({e["seq"] for e in http.get("/v1/events", params={"limit": 1000},
                                                                             headers=tenant_auth).json()["events"]} - seen),
                                 "the event made while the browser was offline")
        assert not console.all(f"#event-wall li[data-seq='{new[0]}']")
    finally:
        console.driver.execute_cdp_cmd("Network.emulateNetworkConditions", {**offline, "offline": False})
    console.until(f"#event-wall li[data-seq='{new[0]}']")
    assert int(state.get_attribute("data-connections")) >= 2 and int(state.get_attribute("data-last-event-id")) < new[0]
    console.until("#wall-state", "reconnected from event")

    console.until(f"#unknown-list form.promote[data-unknown='{stranger}'] .promote-id").send_keys("obama")
    console.find(f"#unknown-list form.promote[data-unknown='{stranger}'] button").click()
    console.until("#page-cameras .ok", "obama is now a person")
    found = http.get("/v1/persons", params={"limit": 100}, headers=tenant_auth).json()["persons"]
    assert "obama" in [p["external_id"] for p in found]
    # the page says the events were renamed, and its event list shows them renamed
    assert "1 event(s) renamed" in console.until("#page-cameras .ok", "obama is now a person").text
    renamed = console.until("#event-wall li[data-who=obama]")
    assert f"(was unknown {stranger})" in renamed.text and not console.all(f"#event-wall li[data-who='{stranger}']")
    console.find("#show-attendance").click()
    console.until("#attendance td[data-col=person]", "kit_harington")
    # The download a person gets by clicking the link (into a folder of this test).
    downloads.mkdir(exist_ok=True)
    console.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    link = console.until("#attendance-csv")
    link.click()
    target = downloads / link.get_attribute("download")
    console.wait.until(lambda _: target.is_file() and target.stat().st_size > 0, "the CSV download")
    csv = target.read_text()
    assert csv.splitlines()[0] == "person,first_in,first_camera,last_out,last_camera,events"
    assert any(line.startswith("kit_harington,") and ",front door," in line for line in csv.splitlines()[1:]), csv


# ---- the flows beyond the tour: each signs in as its own tenant (made over HTTP) ---------------------------------
def tenant_in_browser(console, http, admin_token, name: str) -> dict:
    r = http.post("/v1/tenants", json={"name": f"{name}-{secrets.token_hex(3)}"}, headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 201, r.text
    tenant = {"id": r.json()["tenant_id"], "key": r.json()["api_key"], "auth": {"Authorization": f"Bearer {r.json()['api_key']}"}}
    console.driver.get(f"{console.base_url}/console/")
    if console.all("#sign-out"):
        console.find("#sign-out").click()
    console.sign_in("tenant", tenant["key"])
    return tenant


def enrolled(http, tenant, external_id: str, *photos: Path) -> tuple[str, list[str]]:
    r = http.post("/v1/persons", json={"external_id": external_id}, headers=tenant["auth"])
    assert r.status_code == 201, r.text
    pid, faces = r.json()["person_id"], []
    for photo in photos:
        r = http.post(f"/v1/persons/{pid}/faces", json={"image": base64.b64encode(photo.read_bytes()).decode()}, headers=tenant["auth"])
        assert r.status_code == 201, r.text
        faces.append(r.json()["face_id"])
    return pid, faces


def press(console, key, times: int = 1) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    for _ in range(times):
        ActionChains(console.driver).send_keys(key).perform()


def tab_to(console, css: str, limit: int = 80):
    """Presses Tab until the focused element matches css (as a keyboard-only user moves): that element."""
    from selenium.webdriver.common.keys import Keys

    for _ in range(limit):
        if console.driver.execute_script("return document.activeElement.matches(arguments[0])", css):
            return console.driver.switch_to.active_element
        press(console, Keys.TAB)
    raise AssertionError(f"Tab never reached {css!r}")


def test_corrections_keyboard_only(browser, app, http, admin_token, identity_photos, faces_root, axe_source):
    """Move a misfiled face, a refused merge with the API's own error, a merge, then on Identify "not this
    person" and on People its undo, the last two with the keyboard alone (Tab, Enter, Escape)."""
    from selenium.webdriver.common.keys import Keys

    console = Console(browser, app[1], axe_source)
    tenant = tenant_in_browser(console, http, admin_token, "console-corrections")
    kit, rose = identity_photos["kit_harington"], identity_photos["rose_leslie"]
    kit_id, (kit_face, misfiled) = enrolled(http, tenant, "kit_harington", kit[0], rose[1])  # rose's photo filed under kit
    rose_id, _ = enrolled(http, tenant, "rose_leslie", rose[0])
    dup_id, _ = enrolled(http, tenant, "kit-again", kit[1])
    person = lambda pid: http.get(f"/v1/persons/{pid}", headers=tenant["auth"])  # noqa: E731

    console.go("people")
    console.type("#person-query", "kit_harington")
    console.find("#person-query").send_keys(Keys.ENTER)
    console.until("#person-detail h2", "kit_harington")
    console.type(f"form.move[data-face='{misfiled}'] input", "rose_leslie")
    console.find(f"form.move[data-face='{misfiled}'] button").click()
    console.until("dialog.confirm", "Move this face to rose_leslie?").find_element("css selector", "button.primary").click()
    console.until("#correction-status .ok", f"Face {misfiled} moved to rose_leslie")
    assert [f["face_id"] for f in person(kit_id).json()["faces"]] == [kit_face]
    assert misfiled in [f["face_id"] for f in person(rose_id).json()["faces"]]

    # A merge into itself: refused with the API's own code and message.
    api = http.post(f"/v1/persons/{kit_id}/merge", json={"merged_person_id": kit_id}, headers=tenant["auth"]).json()["error"]
    console.type("#merge-id", "kit_harington")
    console.find("#merge-person").click()
    console.until("dialog.confirm", "Merge kit_harington into kit_harington?").find_element("css selector", "button.danger").click()
    assert console.read("#correction-status .error[data-code=same_person]", ".message") == [[api["message"]]]
    console.type("#merge-id", "kit-again")
    console.find("#merge-person").click()
    console.until("dialog.confirm", "Merge kit-again into kit_harington?").find_element("css selector", "button.danger").click()
    console.until("#correction-status .ok", "Merged kit-again into kit_harington: 1 face(s)")
    assert person(dup_id).status_code == 404 and len(person(kit_id).json()["faces"]) == 2
    console.wait.until(lambda _: "kit-again" not in [td.text for td in console.all("#person-list td[data-col=external_id]")])
    console.shot("11-people-corrections")

    # ---- Identify, keyboard only ------------------------------------------------------------------------------
    console.go("identify")
    console.upload("input[name=identify-photo]", faces_root / "scenes" / "kit_with_rose.jpg")  # the file chooser's answer
    console.wait.until(lambda _: sorted(b.get_attribute("data-name") for b in console.all(".box")) == ["kit_harington", "rose_leslie"])
    tab_to(console, "#identify-results li[data-name=kit_harington] button.not-them")
    press(console, Keys.ENTER)
    console.until("dialog.confirm", "Not kit_harington?")
    press(console, Keys.ESCAPE)  # Escape cancels: nothing is sent
    assert not console.all("dialog.confirm")
    assert http.get(f"/v1/persons/{kit_id}/rejections", headers=tenant["auth"]).json()["rejections"] == []
    tab_to(console, "#identify-results li[data-name=kit_harington] button.not-them")
    press(console, Keys.ENTER)
    console.until("dialog.confirm", "Not kit_harington?")
    assert console.driver.switch_to.active_element.text == "Cancel"  # the safe choice has the focus
    press(console, Keys.TAB)
    assert console.driver.switch_to.active_element.text == "Not kit_harington"
    press(console, Keys.ENTER)
    console.until("#page-identify .ok", "is now a rejection of kit_harington")
    assert console.all("dialog.confirm") == []  # closed and removed
    # searched again: the face is no longer kit (its own rejection is closer than kit's faces)
    console.wait.until(lambda _: "kit_harington" not in [b.get_attribute("data-name") for b in console.all(".box")])
    (rejection,) = http.get(f"/v1/persons/{kit_id}/rejections", headers=tenant["auth"]).json()["rejections"]
    assert rejection["source"] == "image"
    console.shot("12-identify-not-this-person")

    # ---- its undo on People, keyboard only --------------------------------------------------------------------
    console.go("people")
    console.type("#person-query", "kit_harington")
    console.find("#person-query").send_keys(Keys.ENTER)
    console.until("#rejection-list td[data-col=rejection_id]", rejection["rejection_id"])
    tab_to(console, f"#rejection-list button[aria-label='Undo rejection {rejection['rejection_id']}']")
    press(console, Keys.ENTER)
    console.until("dialog.confirm", "Undo this rejection of kit_harington?")
    press(console, Keys.TAB)
    press(console, Keys.ENTER)
    console.until("#correction-status .ok", "undone")
    console.until("#rejection-list .empty", "No rejections")
    assert http.get(f"/v1/persons/{kit_id}/rejections", headers=tenant["auth"]).json()["rejections"] == []
    console.go("identify")
    console.upload("input[name=identify-photo]", faces_root / "scenes" / "kit_with_rose.jpg")
    console.wait.until(lambda _: sorted(b.get_attribute("data-name") for b in console.all(".box")) == ["kit_harington", "rose_leslie"])


def test_bulk_import_from_a_folder_and_a_csv(browser, app, http, admin_token, identity_photos, faces_root, tmp_path, axe_source):
    """A folder of sub-folders: each photo's row ends enrolled or refused (its reason; two faces boxed); run
    again, everything enrolled is skipped. Then a CSV naming a photo that was not chosen."""
    import cv2

    console = Console(browser, app[1], axe_source)
    tenant = tenant_in_browser(console, http, admin_token, "console-import")
    root = tmp_path / "people"
    for who, photos in {"obama": identity_photos["obama"][:2], "biden": identity_photos["biden"][:1]}.items():
        (root / who).mkdir(parents=True)
        for photo in photos:
            shutil.copy(photo, root / who / photo.name)
    shutil.copy(faces_root / "scenes" / "kit_with_rose.jpg", root / "biden" / "two_faces.jpg")
    (root / "kit").mkdir()
    photo = cv2.imread(str(identity_photos["kit_harington"][0]))
    cv2.imwrite(str(root / "kit" / "tiny.jpg"), cv2.resize(photo, None, fx=0.15, fy=0.15, interpolation=cv2.INTER_AREA))
    (root / "readme.txt").write_text("not a photo, and not in a sub-folder\n")

    console.go("import")
    console.upload("#import-folder", root)
    console.until("#import-counts", "5 photo(s) of 3 person(s) ready")
    console.find("#start-import").click()
    console.until("#import-counts", "5 of 5 photo(s): 3 enrolled, 0 skipped (already enrolled), 2 refused")
    state = lambda path: console.find(f"#import-rows tr[data-path='{path}']").get_attribute("data-state")  # noqa: E731
    assert [state(p) for p in ("obama/" + identity_photos["obama"][0].name, "biden/two_faces.jpg", "kit/tiny.jpg")] == ["enrolled", "refused", "refused"]
    two = console.find("#import-rows tr[data-path='biden/two_faces.jpg']")
    assert two.find_element("css selector", ".error .code").text == "multiple_faces"
    assert len(two.find_elements("css selector", ".frame .box")) == 2
    tiny = console.find("#import-rows tr[data-path='kit/tiny.jpg']")
    assert tiny.find_element("css selector", ".error .code").text == "low_quality"
    reasons = [li.get_attribute("textContent") for li in tiny.find_elements("css selector", ".reasons li")]
    assert any(r.startswith("face too small (face_size:") for r in reasons), reasons
    console.shot("13-import")
    console.find("#start-import").click()  # "Import again": the server skips what it has
    console.until("#import-counts", "5 of 5 photo(s): 0 enrolled, 3 skipped (already enrolled), 2 refused")
    obama = http.get("/v1/persons", params={"external_id": "obama"}, headers=tenant["auth"]).json()["persons"][0]
    assert len(http.get(f"/v1/persons/{obama['person_id']}", headers=tenant["auth"]).json()["faces"]) == 2

    # a CSV (external_id,path) and the folder its paths start from; one row names a photo that is not there
    rose = identity_photos["rose_leslie"][0]
    shutil.copy(rose, root / "kit" / rose.name)
    listing = tmp_path / "photos.csv"
    listing.write_text(f"external_id,path\nrose_leslie,kit/{rose.name}\nobama,obama/{identity_photos['obama'][0].name}\nnobody,gone/missing.jpg\n")
    console.go("import")
    console.upload("#import-csv-photos", root)
    console.upload("#import-csv", listing)
    console.until("#import-counts", "2 photo(s) of 2 person(s) ready; 1 named in the CSV but not chosen")
    console.find("#start-import").click()
    console.until("#import-counts", "2 of 2 photo(s): 1 enrolled, 1 skipped (already enrolled), 0 refused")
    assert console.find("#import-rows tr[data-path='gone/missing.jpg']").get_attribute("data-state") == "missing"
    assert http.get("/v1/persons", params={"external_id": "rose_leslie"}, headers=tenant["auth"]).json()["persons"]


def test_webhooks_dead_letter_retried(browser, app, http, admin_token, identity_photos, axe_source):
    """A webhook made in the console whose receiver answers 500: its delivery is dead-lettered, the receiver
    recovers, Retry delivers it."""
    from tests.streams.test_cameras import WebhookReceiver

    console = Console(browser, app[1], axe_source)
    tenant = tenant_in_browser(console, http, admin_token, "console-webhooks")
    enrolled(http, tenant, "kit_harington", identity_photos["kit_harington"][0])
    receiver = WebhookReceiver(fail_first=10**6)
    console.go("webhooks")
    console.type("#webhook-url", receiver.url)
    console.find("#webhook-kind-person_seen").click()
    console.type("#webhook-attempts", "1")
    console.find("#create-webhook").click()
    secret = console.until("#new-webhook-secret").get_attribute("value")
    assert secret
    row = console.until("#webhook-list td[data-col=url]", "127.0.0.1")
    (hook,) = http.get("/v1/webhooks", headers=tenant["auth"]).json()["webhooks"]
    assert hook["kinds"] == ["person_seen"] and hook["max_attempts"] == 1 and row.text == hook["url"]

    stream = http.post("/v1/streams", json={"name": "gate"}, headers=tenant["auth"]).json()
    origin = time.time()
    for i in range(6):
        r = http.post(f"/v1/streams/{stream['stream_id']}/frames", params={"ts": origin + i * 0.2},
                      content=identity_photos["kit_harington"][0].read_bytes(), headers={**tenant["auth"], "Content-Type": "image/jpeg"})
        assert r.status_code == 202, r.text
    console.find(f"#webhook-list button[aria-label='Deliveries of {hook['webhook_id']}']").click()
    from selenium.webdriver.support.ui import Select

    Select(console.until("#delivery-state")).select_by_value("dead")
    dead = console.until("#delivery-list td[data-col=state]", "dead")
    assert "HTTP 500" in console.find("#delivery-list td[data-col=last]").text
    console.shot("14-webhooks-dead-letter")
    receiver.fail_first = 0
    console.find("#delivery-list button.retry").click()
    console.until("#webhook-deliveries .ok", "queued again")
    Select(console.find("#delivery-state")).select_by_value("delivered")
    console.until("#delivery-list td[data-col=state]", "delivered")
    assert dead is not None and len(receiver.received) == 1
    console.until("#webhook-list td[data-col=deliveries]", "1 delivered")


def test_admin_keys_migration_and_audit_verification(browser, app, http, admin_token, identity_photos, axe_source):
    """Admin keys with scopes made and revoked in the console (the revoked key is refused), a model migration
    the server refuses shown with its reason, and the org's and a tenant's audit verified."""
    console = Console(browser, app[1], axe_source)
    admin = {"Authorization": f"Bearer {admin_token}"}
    tenant_name = f"console-admin-{secrets.token_hex(3)}"
    assert http.post("/v1/tenants", json={"name": tenant_name}, headers=admin).status_code == 201
    browser.get(f"{app[1]}/console/")
    if console.all("#sign-out"):
        console.find("#sign-out").click()
    console.sign_in("admin", admin_token)
    console.until("#tenant-list td", tenant_name)

    name = f"ops-{secrets.token_hex(3)}"
    console.type("#admin-key-name", name)
    console.find("#scope-tenants-read").click()
    console.find("#scope-audit-read").click()
    console.find("#create-admin-key").click()
    key = console.until("#new-admin-key").get_attribute("value")
    assert http.get("/v1/tenants", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert http.get("/v1/admin/keys/status", headers={"Authorization": f"Bearer {key}"}).status_code == 403  # scopes hold
    row = console.until("#admin-key-list td[data-col=name]", name).find_element("xpath", "..")
    assert row.find_element("css selector", "td[data-col=scopes]").text == "tenants:read, audit:read"
    row.find_element("css selector", "button.danger").click()
    console.until("dialog.confirm", f"Revoke admin key {name}?").find_element("css selector", "button.danger").click()
    console.until("#page-admin .ok", f"Admin key {name} revoked")
    assert http.get("/v1/tenants", headers={"Authorization": f"Bearer {key}"}).json()["error"]["code"] == "forbidden"

    # migration: to the pack the tenant is on already, then to one that is not served: the API's refusals
    console.find(f"#tenant-list button[aria-label='Migrate model ({tenant_name})']").click()
    console.until("#migration-progress", "No migration of this tenant")
    console.find("#start-migration").click()
    refused = console.until("#tenant-editor .error[data-code=invalid_request]")
    assert "already bound" in refused.text
    console.type("#migration-pack", "nope")
    console.find("#start-migration").click()
    console.until("#tenant-editor .error .message", "no model pack named 'nope'")

    # audit verification, the org's and the tenant's, each with its verdict in words
    console.find("#verify-audit").click()
    console.until("#audit-verdict .verdict", "Intact: the org audit")
    from selenium.webdriver.support.ui import Select

    Select(console.find("#audit-chain")).select_by_visible_text(f"tenant {tenant_name}")
    console.find("#verify-audit").click()
    console.until("#audit-verdict .verdict", f"Intact: tenant {tenant_name}'s audit")
    console.shot("15-admin-keys-audit")
    console.find("#sign-out").click()
