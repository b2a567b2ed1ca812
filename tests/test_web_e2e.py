"""The page in a real headless Chromium: draw a stroke, see predictions and feature maps, hover a receptive field.

Needs Debian's chromium and chromium-driver and the selenium package ([dev]). `.ci/run` installs the browser
with .ci/install-browser first and fails when apt is there but cannot install it, so in CI this test runs;
it skips, saying why, only where the browser is missing and apt cannot be used (no apt-get, or not root).
"""
import http.client
import json
import os
import shutil
import tempfile
import time

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless and quiet: no GPU, no sandbox (containers run as root), nothing fetched from the network; tall enough
# that the whole page fits, so nothing scrolls before the screenshot.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1600"]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'")
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    why = ("apt-get is not available on this machine" if shutil.which("apt-get") is None
           else "run 'bash .ci/install-browser' (apt-get install chromium chromium-driver, as root) first")
    pytest.skip(f"no headless browser: {CHROMIUM} and {CHROMEDRIVER} are missing; {why}", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from cnnkit.io import save_checkpoint  # noqa: E402
from cnnkit.models import create  # noqa: E402
from cnnkit.web import Predictor, Server, create_app  # noqa: E402

CLASSES = ["x", "o", "plus", "triangle", "square", "diamond"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import cnnkit

    cnnkit.manual_seed(5)
    model = create("lenet5", num_classes=len(CLASSES), in_channels=1, image_size=28)
    path = tmp_path_factory.mktemp("e2e") / "best.safetensors"
    save_checkpoint(path, model, extra={"data": {"classes": CLASSES, "in_channels": 1, "image_size": 28,
                                                 "mean": [0.0889], "std": [0.2228]}})
    running = Server(create_app(Predictor.from_checkpoint(path)), host="127.0.0.1", port=0).start()
    yield running
    running.stop()


@pytest.fixture
def browser():
    profile = tempfile.mkdtemp(prefix="cnnkit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_draw_predict_and_hover_a_receptive_field(server, browser, tmp_path, capsys):
    try:
        screenshot, seconds = _draw_predict_and_hover(server, browser, tmp_path)
        with capsys.disabled():  # shown in CI's log even without -s
            print(f"\ne2e: page loaded, drawn (mouse and touch), predicted and hovered in {seconds:.2f} s; "
                  f"screenshot {screenshot}")
    except Exception:
        # keep what the browser showed, to see why
        path = tmp_path / "failure.png"
        browser.save_screenshot(str(path))
        print(f"\nfailure screenshot: {path}; status line: {browser.find_element(By.ID, 'status').text!r}")
        raise


def _predict(server, data_url):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", "/api/predict", body=json.dumps({"image": data_url}),
                           headers={"Content-Type": "application/json"})
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def _dark_pixels(browser):
    return browser.execute_script(
        "const d = document.getElementById('canvas').getContext('2d').getImageData(0, 0, 280, 280).data;"
        "let dark = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 128) dark++; return dark;")


def _draw_predict_and_hover(server, browser, tmp_path):
    started = time.perf_counter()
    wait = WebDriverWait(browser, 30)
    browser.get(server.url)
    wait.until(lambda d: "lenet5" in d.find_element(By.ID, "model-name").text)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#summary tbody tr")) >= 4

    # Draw an X (offsets are from the 280x280 canvas's centre). The first stroke with the mouse, moving without
    # a pause (40 ms a step): requests go out while the pen still moves, and with the button still held the
    # predictions already show (they follow the pen, not only its release).
    browser.execute_script(
        "window.sentAt = []; const send = window.fetch;"
        "window.fetch = (...args) => { sentAt.push(performance.now()); return send(...args); };"
        "window.lastMoveAt = 0; canvas.addEventListener('pointermove', () => { lastMoveAt = performance.now(); });")
    canvas = browser.find_element(By.ID, "canvas")
    stroke = ActionChains(browser, duration=40).move_to_element_with_offset(canvas, -80, -80).click_and_hold()
    for step in range(1, 17):
        stroke.move_to_element_with_offset(canvas, -80 + 10 * step, -80 + 10 * step)
    stroke.perform()
    assert browser.execute_script("return sentAt.filter((t) => t < lastMoveAt).length") >= 1
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#predictions li.prediction")) == 5)
    ActionChains(browser).release().perform()
    first_ink = _dark_pixels(browser)
    assert first_ink > 1000, "the mouse stroke did not reach the canvas"

    # The second stroke with a finger (touch pointer events).
    finger = ActionBuilder(browser, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"))
    finger.pointer_action.move_to(canvas, 80, -80).pointer_down()
    for step in range(1, 9):
        finger.pointer_action.move_to(canvas, 80 - 20 * step, -80 + 20 * step)
    finger.pointer_action.pointer_up()
    finger.perform()
    assert _dark_pixels(browser) > first_ink + 1000, "the touch stroke did not reach the canvas"

    # Once the page is idle, its predictions are the server's answer for the whole drawing.
    wait.until(lambda d: d.execute_script("return !inFlight && !pending && timer === null && latest !== null"))
    shown = [(item.find_element(By.CSS_SELECTOR, ".label").text, item.find_element(By.CSS_SELECTOR, ".prob").text)
             for item in browser.find_elements(By.CSS_SELECTOR, "#predictions li.prediction")]
    answer = _predict(server, browser.execute_script("return canvas.toDataURL('image/png')"))
    assert shown == [(entry["label"], f"{100 * entry['prob']:.1f}%") for entry in answer["top5"]]
    assert len({label for label, _ in shown}) == 5 and {label for label, _ in shown} <= set(CLASSES)

    # Every conv/pool layer's maps appear.
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "img.fmap")) == 6 + 6 + 16 + 16)
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('img.fmap')].every(i => i.complete && i.naturalWidth > 0)"))
    titles = [element.text for element in browser.find_elements(By.CSS_SELECTOR, ".layer h3")]
    assert any("features.3" in title and "16×10×10" in title for title in titles), titles

    # Hover unit (5, 5) of a features.3 map (16x10x10), just below-right of the map's centre (the centre is
    # the corner between units 4 and 5): it sees input rows/cols -2 + 5*2 .. +13 = 8..21.
    fmap = browser.find_element(By.CSS_SELECTOR, 'img.fmap[data-layer="2"][data-channel="3"]')
    cell = fmap.rect["width"] / 10
    ActionChains(browser).move_to_element_with_offset(fmap, round(cell / 2), round(cell / 2)).perform()
    box = browser.find_element(By.ID, "rf-box")
    wait.until(lambda d: box.is_displayed())
    assert box.get_attribute("data-layer") == "features.3"
    assert box.get_attribute("data-unit") == "5,5"
    assert box.get_attribute("data-span") == "8,8,21,21"
    # Its size on the canvas is the 14-pixel field scaled by the view the server cut out of the drawing.
    expected = browser.execute_script(
        "const v = latest.input.view; return 14 * v.width / 28 * canvas.clientWidth / v.source_width;")
    assert abs(box.rect["width"] - min(expected, 280)) <= 2
    canvas_rect, box_rect = canvas.rect, box.rect
    assert canvas_rect["x"] <= box_rect["x"] and box_rect["x"] + box_rect["width"] <= canvas_rect["x"] + 282
    assert browser.find_element(By.ID, "rf-box-input").is_displayed()
    assert "sees input rows 8–21" in browser.find_element(By.ID, "rf-caption").text

    screenshot = tmp_path / "cnnkit-serve.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    seconds = time.perf_counter() - started

    # Moving away hides the highlight again.
    ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h1")).perform()
    wait.until(lambda d: not box.is_displayed())
    return screenshot, seconds


def _highlighted(browser, selector):
    return sorted(browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((c) => [Number(c.dataset.row), "
        "Number(c.dataset.col)]);", selector))


def test_conv_demo_steps_and_highlights_the_window_of_each_output(server, browser, tmp_path, capsys):
    from cnnkit.viz import conv_demo

    wait = WebDriverWait(browser, 30)
    browser.get(server.url + "conv")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#o-1 td")) == 9)
    browser.find_element(By.ID, "play").click()  # pause the animation; step by hand from here
    demo = conv_demo()
    shown = [[[float(cell.text) for cell in row.find_elements(By.TAG_NAME, "td")]
              for row in browser.find_elements(By.CSS_SELECTOR, f"#o-{k} tr")] for k in range(2)]
    assert shown == demo["output"]
    start = int(browser.execute_script("return Number(document.body.dataset.step)"))
    for count in range(len(demo["steps"]) + 1):  # once round, and back to the first output
        browser.find_element(By.ID, "next").click()
        step = demo["steps"][(start + count + 1) % len(demo["steps"])]
        data = browser.execute_script("return {...document.body.dataset}")
        assert (int(data["k"]), int(data["row"]), int(data["col"])) == (step["k"], step["row"], step["col"])
        window = sorted([step["row"] * 2 + i, step["col"] * 2 + j] for i in range(3) for j in range(3))
        for d in range(3):  # the window: rows/cols 2*row .. 2*row + 2 of the padded 7x7 input, in every slice
            assert _highlighted(browser, f"#x-{d} td.hl") == window
        assert _highlighted(browser, f"#o-{step['k']} td.hl") == [[step["row"], step["col"]]]
        assert len(browser.find_elements(By.CSS_SELECTOR, "td.hl")) == 3 * 9 + 1
        assert browser.find_element(By.ID, f"filter-{step['k']}").get_attribute("class") == "column filter active"
        last_line = browser.find_element(By.ID, "step-detail").text.splitlines()[-1]
        assert last_line.endswith(f"o[{step['row']}, {step['col']}, {step['k']}] = {step['value']:g}")
    screenshot = tmp_path / "conv-demo.png"
    browser.save_screenshot(str(screenshot))

    # A control changes the output size and values: W = 7 gives (7 - 3 + 2) / 2 + 1 = 4 columns.
    width = browser.find_element(By.CSS_SELECTOR, 'input[name="width"]')
    width.clear()
    width.send_keys("7")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#o-0 tr:first-child td")) == 4)
    shown = [[float(cell.text) for cell in row.find_elements(By.TAG_NAME, "td")]
             for row in browser.find_elements(By.CSS_SELECTOR, "#o-0 tr")]
    assert shown == conv_demo(width=7)["output"][0]
    assert "(7 - 3 + 2*1) / 2 + 1 = 4" in browser.find_element(By.ID, "formula").text

    # W = H = 10, P = 0 do not tile: the page shows cnnkit's strict-mode message instead of numbers.
    for name, value in (("height", "10"), ("padding", "0"), ("width", "10")):
        field = browser.find_element(By.CSS_SELECTOR, f'input[name="{name}"]')
        field.clear()
        field.send_keys(value)
    error = browser.find_element(By.ID, "conv-error")
    wait.until(lambda d: error.is_displayed())
    assert "= 4.5 is not an integer" in error.text and error.text.startswith("conv2d: ")
    assert "(10 - 3 + 2*0) / 2 + 1 = 4.5" in browser.find_element(By.ID, "formula").text
    assert not browser.find_elements(By.CSS_SELECTOR, "#volumes td")
    with capsys.disabled():
        print(f"\ne2e: conv demo stepped through {len(demo['steps']) + 1} outputs; screenshot {screenshot}")


def test_the_heat_map_of_the_top_class_follows_the_prediction(server, browser, tmp_path, capsys):
    wait = WebDriverWait(browser, 30)
    browser.get(server.url)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#evidence-method option")) == 4)
    assert browser.find_element(By.ID, "evidence-method").get_attribute("value") == "gradcam"
    canvas = browser.find_element(By.ID, "canvas")
    stroke = ActionChains(browser, duration=20).move_to_element_with_offset(canvas, -70, -70).click_and_hold()
    for step in range(1, 8):
        stroke.move_to_element_with_offset(canvas, -70 + 20 * step, -70 + 20 * step)
    stroke.release().perform()
    overlay = browser.find_element(By.ID, "heat-overlay")
    wait.until(lambda d: overlay.is_displayed() and d.execute_script(
        "return !inFlight && !pending && timer === null && latest !== null"))
    wait.until(lambda d: overlay.get_attribute("data-label") == d.execute_script("return latest.top5[0].label"))
    assert overlay.get_attribute("data-method") == "gradcam"
    assert "Grad-CAM evidence for class" in browser.find_element(By.ID, "evidence-caption").text
    screenshot = tmp_path / "evidence.png"
    browser.save_screenshot(str(screenshot))
    Select(browser.find_element(By.ID, "evidence-method")).select_by_value("saliency")
    wait.until(lambda d: overlay.get_attribute("data-method") == "saliency")
    Select(browser.find_element(By.ID, "evidence-method")).select_by_value("off")
    wait.until(lambda d: not overlay.is_displayed())
    with capsys.disabled():
        print(f"\ne2e: heat map shown over the drawing; screenshot {screenshot}")
