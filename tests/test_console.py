"""The web console in a real browser: Debian's Chromium driven by Selenium through /usr/bin/chromedriver,
against the running service on the shared models and photos. One browser session walks the whole flow;
screenshots of every page land in reports/console/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "reports" / "console"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "media-src 'self' blob:; frame-ancestors 'none'")
WAIT_S = 60  # enrolment and search run the real models on 2 busy cores


@pytest.fixture(scope="module")
def admin_token(app, data_dir, http) -> str:
    http.get("/v1/readyz")  # the router has started and written the token
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


class Console:
    """The browser, with the few moves the flow needs."""

    def __init__(self, driver, base_url: str) -> None:
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
        photographed is also checked for unlabelled controls."""
        assert self.unlabelled() == [], (name, self.unlabelled())
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


def test_console_flow_in_a_real_browser(browser, app, http, admin_token, identity_photos, faces_root, tmp_path):
    console = Console(browser, app[1])
    browser.get(f"{app[1]}/console")
    assert browser.current_url.endswith("/console/")
    console.until("#sign-in-form")
    console.shot("01-sign-in")

    # ---- admin: wrong token refused with the API's own error, then the real one ----------------------------
    console.until("#sign-in-form")
    console.find("#kind-admin").click()
    console.type("#credential", "not-the-token")
    console.find("#sign-in").click()
    refusal = console.until("#sign-in-form .error")
    assert refusal.find_element("css selector", ".code").text == "forbidden"
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
    shown = console.until("#enrol-status .error")
    api = http.post(f"/v1/persons/{persons['rose_leslie']}/faces", json={"image": base64.b64encode(not_an_image.read_bytes()).decode()},
                    headers={"Authorization": f"Bearer {api_key}"}).json()["error"]
    assert shown.find_element("css selector", ".code").text == api["code"] == "invalid_image"
    assert shown.find_element("css selector", ".message").text == api["message"]
    # A photo whose face is too small and blurry: the quality gates' reasons are shown, each by name.
    import cv2

    small = tmp_path / "kit_small.jpg"
    photo = cv2.imread(str(identity_photos["kit_harington"][0]))
    cv2.imwrite(str(small), cv2.resize(photo, None, fx=0.15, fy=0.15, interpolation=cv2.INTER_AREA))
    console.upload("input[name=enrol-photo]", small)
    refused = console.until("#enrol-status .error[data-code=low_quality]")
    reasons = [li.text for li in refused.find_elements("css selector", ".reasons li")]
    assert any(r.startswith("face too small (face_size:") for r in reasons), reasons

    # The device camera (Chromium's test pattern: no face in it): a frame is taken and refused by the API.
    console.button("#person-detail", "Use camera").click()
    console.until("#person-detail video.camera")
    console.button("#person-detail", "Take photo").click()
    refused = console.until("#enrol-status .error[data-code=no_face]")
    assert refused.find_element("css selector", ".message").text == "no face found in image"
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

    console.type("#person-query", "rose")
    console.find("#person-query").send_keys(Keys.ENTER)
    console.wait.until(lambda _: [td.text for td in console.all("#person-list td[data-col=external_id]")] == ["rose_leslie"])

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
    console.until("#event-wall li[data-kind=unknown_seen]", "front door")
    console.until("#unknown-list .promote-id").send_keys("obama")
    console.find("#unknown-list form.promote button").click()
    console.until("#page-cameras .ok", "obama is now a person")
    found = http.get("/v1/persons", params={"limit": 100}, headers=tenant_auth).json()["persons"]
    assert "obama" in [p["external_id"] for p in found]
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
