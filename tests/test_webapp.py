"""``fruitkeras serve``: the real server in a subprocess, driven by headless Chromium and Gradio's client.

The server runs the shipped model (committed, so every clone has it) and a
tiny Pillow-made Test folder with the model's 77 class names.  Chromium and
its driver are Debian's packages, which ``.ci/run`` installs; without them
the browser tests fail, everywhere, with the line that installs them.
Set FRUITKERAS_SCREENSHOTS=docs to refresh the README's screenshots.
"""

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO

SHIPPED_RUN = REPO / "runs" / "fruits77-vgg_small"
SAMPLES = REPO / "samples"
PREDICTED = "(the predicted class)"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SERVER_START_SECONDS = 180
PAGE_WAIT_SECONDS = 120


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def shipped_class_names():
    with zipfile.ZipFile(SHIPPED_RUN / "model.keras") as archive:
        return json.loads(archive.read("fruitkeras.json"))["class_names"]


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    """ROOT/Test/<class>/ for every class of the shipped model, two small photos each."""
    root = tmp_path_factory.mktemp("serve-data")
    rng = np.random.default_rng(0)
    for name in shipped_class_names():
        folder = root / "Test" / name
        folder.mkdir(parents=True)
        for index in range(2):
            pixels = np.full((100, 100, 3), 255, np.uint8)
            pixels[30:70, 30:70] = rng.integers(0, 256, size=3)
            Image.fromarray(pixels).save(folder / f"{index}_100.jpg")
    return root


@contextlib.contextmanager
def serving(*options):
    """``fruitkeras serve`` of the shipped run on a free loopback port; yields its address and its output lines."""
    port = free_port()
    command = [sys.executable, "-m", "fruitkeras.cli", "serve", str(SHIPPED_RUN), *map(str, options),
               "--port", str(port)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + SERVER_START_SECONDS
    while not any("serving" in line for line in lines):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("fruitkeras serve did not start:\n" + "".join(lines))
        time.sleep(0.2)
    url = next(line for line in lines if "serving" in line).split(" at ")[1].split()[0]
    assert url == f"http://127.0.0.1:{port}/", lines  # loopback by default
    try:
        yield url, lines
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(test_split):
    """The page with --data: Test images to pick as well as the samples."""
    with serving("--data", test_split) as (url, _):
        yield url


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def settings(methods=("gradient",), target=PREDICTED, patch=10, stride=1, fill="white"):
    return [list(methods), target, patch, stride, fill]


def top_label(label_output):
    return label_output["label"]


# --- API level (Gradio's client) -------------------------------------------------------------------------------


def top5_rows(table):
    """(class, probability) of the page's top-5 Markdown table."""
    rows = [line for line in table.splitlines() if line.startswith("|")][2:]  # the verdict line stands above
    return [tuple(cell.strip() for cell in line.strip("|").split("|")) for line in rows]


def test_a_sample_is_explained_with_the_same_maps_as_the_cli(client, tmp_path):
    from gradio_client import handle_file

    from fruitkeras.explain.report import ExplainOptions, explain_files

    sample = SAMPLES / "Apple_Braeburn_1.jpg"
    status, preview, top5, gallery, files = client.predict(
        handle_file(sample), *settings(["gradient", "occlusion"], stride=4), api_name="/explain_upload")
    assert status.startswith("**Predicted: Apple Braeburn**"), status
    rows = top5_rows(top5)
    assert rows[0][0] == "**Apple Braeburn**" and len(rows) == 5
    # Probabilities as percentages, the runner-ups too: "< 0.1%" rather than a bare 0%.
    assert all(re.fullmatch(r"(< 0\.1|\d{1,3}\.\d)%", probability) for _, probability in rows), rows
    assert "0%" not in [probability for _, probability in rows]
    assert len(gallery) == 2 and Image.open(preview).size == (100, 100)
    page_maps = {Path(f).name: np.load(f) for f in files if f.endswith(".npy")}
    assert {Path(f).suffix for f in files} == {".png", ".npy"} and len(page_maps) == 2

    explained, _ = explain_files(SHIPPED_RUN / "model.keras", [sample], ["gradient", "occlusion"],
                                 ExplainOptions(stride=4), tmp_path, echo=lambda *_: None)
    for method, cli_map in explained.maps.items():
        [page_map] = [m for name, m in page_maps.items() if f"_{method}-" in name]
        np.testing.assert_allclose(page_map, cli_map[0], rtol=1e-5, atol=1e-6 * float(np.ptp(cli_map)))


def test_samples_carry_their_true_class_and_a_chosen_class_is_explained(client):
    status, _, top5, gallery, files = client.predict(
        "Tomato_Maroon_1.jpg", *settings(target="Tomato 4"), api_name="/explain_sample")
    assert "true class: Tomato Maroon (correct)" in status and "explaining 'Tomato 4'" in status, status
    assert top5_rows(top5)[0][0] == "**Tomato Maroon**"
    assert any("_as-Tomato_4" in f for f in files)


def test_test_split_picker_and_random_image_show_the_true_class(client, test_split):
    status, *_ = client.predict("Kiwi", "1_100.jpg", *settings(), api_name="/explain_test_image")
    assert "Test/Kiwi/1_100.jpg" in status and "true class: Kiwi" in status, status
    status, _, _, _, _, chosen_class, _ = client.predict(*settings(), api_name="/random_test_image")
    shown = status.split("for *Test/")[1].split("*")[0]  # class/file
    assert f"true class: {chosen_class} " in status and shown.startswith(f"{chosen_class}/")
    assert (test_split / "Test" / shown).is_file()


def bad_uploads(folder):
    """(file, what the message must say) for each kind of bad upload."""
    text = folder / "notes.jpg"
    text.write_text("not a photo at all")
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    whole = (SAMPLES / "Banana_1.jpg").read_bytes()
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(whole[: len(whole) // 3])
    garbage = folder / "corrupt.jpg"
    garbage.write_bytes(whole[:200] + bytes(range(256)) * 8)  # PIL may not even recognise it as a JPEG
    return [(text, "not an image file"), (empty, "not an image file"), (truncated, "unreadable image"),
            (garbage, "image")]


def test_bad_uploads_get_a_message_and_the_server_keeps_serving(client, tmp_path):
    from gradio_client import handle_file

    for path, message in bad_uploads(tmp_path):
        status, preview, top5, gallery, files = client.predict(handle_file(path), *settings(), api_name="/explain_upload")
        assert status.startswith("**Error:**") and message in status and path.name in status, status
        assert str(tmp_path) not in status  # the user's file name, not the server's temporary path
        assert not gallery and not files
    status, *_ = client.predict(handle_file(SAMPLES / "Banana_1.jpg"), *settings(), api_name="/explain_upload")
    assert status.startswith("**Predicted: Banana**"), status


def test_a_huge_photo_is_scaled_like_the_cli_does(client, tmp_path):
    from gradio_client import handle_file

    from fruitkeras.prediction import predict_files

    big = tmp_path / "big.jpg"
    fruit = Image.open(SAMPLES / "Strawberry_1.jpg").resize((4000, 4000), Image.BILINEAR)
    canvas = Image.new("RGB", (6000, 4000), (255, 255, 255))
    canvas.paste(fruit, (1000, 0))
    canvas.save(big, quality=90)
    status, preview, top5, *_ = client.predict(handle_file(big), *settings(), api_name="/explain_upload")
    cli = json.loads("".join(predict_files(SHIPPED_RUN / "model.keras", [big], style="json")))[0]
    assert top5_rows(top5)[0] == (f"**{cli['top'][0]['class']}**", f"{cli['top'][0]['probability']:.1%}"), (top5, cli)
    assert f"Verdict: {cli['verdict']}" in top5
    assert Image.open(preview).size == (100, 100)


def test_two_users_at_once_get_their_own_results(server):
    from gradio_client import Client

    users = {"Banana_1.jpg": "Banana", "Beetroot_1.jpg": "Beetroot", "Eggplant_1.jpg": "Eggplant"}
    clients = [Client(server, verbose=False) for _ in users]
    jobs = [c.submit(name, *settings(["gradient", "occlusion"], stride=2), api_name="/explain_sample")
            for c, name in zip(clients, users)]
    for job, (name, fruit) in zip(jobs, users.items()):
        status, _, top5, _, files = job.result(timeout=PAGE_WAIT_SECONDS)
        assert f"**Predicted: {fruit}**" in status and name in status, status
        assert all(Path(f).name.startswith(Path(name).stem) for f in files)


def test_a_long_occlusion_reports_progress_and_does_not_hold_up_a_quick_request(server):
    from gradio_client import Client

    slow, quick = Client(server, verbose=False), Client(server, verbose=False)
    # Patch 3 at every pixel with a black fill: no position can be skipped, so this runs for seconds.
    finished = {}  # when each request's result arrived, by the clock
    long_job = slow.submit("Mango_Red_1.jpg", *settings(["occlusion", "SmoothGrad", "Integrated Gradients"], patch=3,
                                                        fill="black"), api_name="/explain_sample",
                           result_callbacks=[lambda *_: finished.setdefault("long", time.monotonic())])
    deadline = time.monotonic() + PAGE_WAIT_SECONDS
    while not long_job.status().progress_data:  # occlusion has started and reports its positions
        assert not long_job.done() and time.monotonic() < deadline, "no progress update while occlusion ran"
        time.sleep(0.05)
    status, *_ = quick.predict("Banana_1.jpg", *settings(["gradient"]), api_name="/explain_sample")
    finished["quick"] = time.monotonic()
    assert "Predicted: Banana" in status
    assert "Predicted: Mango Red" in long_job.result(timeout=PAGE_WAIT_SECONDS)[0]
    while "long" not in finished:  # the callback runs just after the result is set
        time.sleep(0.01)
    # Which result arrived first, by the clock: a look at the long job at one instant raced with it.
    assert finished["quick"] < finished["long"], "the quick request waited until the long one had finished"


# --- In a real browser -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):  # a failure, not a skip: nobody reads skips
        pytest.fail(f"the page's browser tests need {CHROMIUM} and {CHROMEDRIVER}: "
                    "apt-get install chromium chromium-driver (.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # No sandbox (CI runs as root) and no background traffic (the machine has no internet).
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1700"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_WAIT_SECONDS)
    yield driver
    driver.quit()


def wait_for(driver, condition, seconds=PAGE_WAIT_SECONDS):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.1).until(condition)


def status_text(driver):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "status").text


def upload(driver, path):
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(path))


def clear_upload(driver):
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, "#upload button[aria-label='Clear']"):
        button.click()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))


def save_screenshot(driver, name):
    folder = os.environ.get("FRUITKERAS_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def cli_json(path):
    """`fruitkeras predict --format json`'s record of one image, with the shipped model (the real command, in
    this process: a fresh interpreter would only add TensorFlow's import)."""
    from click.testing import CliRunner

    from fruitkeras.cli import main

    result = CliRunner().invoke(main, ["predict", str(path), "--model", str(SHIPPED_RUN), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)[0]


def cli_prediction(path):
    return cli_json(path)["top"][0]["class"]


def test_browser_upload_shows_the_prediction_of_fruitkeras_predict_and_heatmaps(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
    photo = SAMPLES / "Potato_Red_Washed_1.jpg"
    for methods, name in ((("gradient",), "gradient"), (("gradient", "occlusion"), "gradient + occlusion")):
        boxes = browser.find_elements(By.CSS_SELECTOR, "#methods input[type=checkbox]")
        for box in boxes:  # tick exactly these methods
            label = box.find_element(By.XPATH, "./..").text.strip()
            if (label in methods) != box.is_selected():
                box.click()
        clear_upload(browser)
        started = time.monotonic()
        upload(browser, photo)
        wait_for(browser, lambda d: "Predicted:" in status_text(d)
                 and len(d.find_elements(By.CSS_SELECTOR, "#heatmaps img")) == len(methods))
        print(f"\nbrowser: upload to heatmaps, {name}: {time.monotonic() - started:.1f} s")
    predicted = status_text(browser).split("Predicted: ")[1].split(" (")[0]
    assert predicted == cli_prediction(photo)
    assert browser.find_element(By.ID, "top5").text.count("%") == 5
    save_screenshot(browser, "serve_explain.png")


def test_browser_a_new_image_clears_the_earlier_pick(server, browser):
    """After a sample was picked, an upload leaves the sample picker empty: the page never shows a previous pick
    beside the new image."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(server)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#sample input"))
    picker = browser.find_element(By.CSS_SELECTOR, "#sample input")
    picker.click()
    picker.send_keys("Banana_1.jpg", Keys.ENTER)
    wait_for(browser, lambda d: "Predicted: Banana" in status_text(d))
    assert browser.find_element(By.CSS_SELECTOR, "#sample input").get_attribute("value") == "Banana_1.jpg"
    clear_upload(browser)
    upload(browser, SAMPLES / "Eggplant_1.jpg")
    wait_for(browser, lambda d: "Predicted: Eggplant" in status_text(d))
    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#sample input").get_attribute("value") == "")


def test_browser_bad_upload_shows_an_error_and_the_page_still_works(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this JPEG stops here")
    upload(browser, bad)
    wait_for(browser, lambda d: "Error:" in status_text(d))
    assert "holiday.jpg" in status_text(browser)
    clear_upload(browser)
    upload(browser, SAMPLES / "Eggplant_1.jpg")
    wait_for(browser, lambda d: "Predicted: Eggplant" in status_text(d) and d.find_elements(By.CSS_SELECTOR, "#heatmaps img"))


def test_browser_model_tab_shows_the_runs_proof(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server)
    wait_for(browser, lambda d: d.find_elements(By.XPATH, "//button[@role='tab' and normalize-space()='Model']"))
    browser.find_element(By.XPATH, "//button[@role='tab' and normalize-space()='Model']").click()
    metrics = json.loads((SHIPPED_RUN / "test_metrics.json").read_text())
    wait_for(browser, lambda d: d.find_elements(By.ID, "run-summary") and d.find_element(By.ID, "run-summary").is_displayed())
    assert f"Test accuracy {metrics['accuracy']:.2%}" in browser.find_element(By.ID, "run-summary").text
    # The shipped run's run.json predates the "precision" record: its distribute entry says float32.
    assert json.loads((SHIPPED_RUN / "run.json").read_text())["distribute"]["mixed_precision"] is None
    assert "computed in float32" in browser.find_element(By.ID, "run-summary").text
    first_timestamp = (SHIPPED_RUN / "history.csv").read_text().splitlines()[1].split(",")[6]
    wait_for(browser, lambda d: first_timestamp in d.find_element(By.ID, "history").text)
    rows = [row.rsplit(",", 3) for row in (SHIPPED_RUN / "test_per_class.csv").read_text().splitlines()[1:]]
    weakest, best = min(rows, key=lambda row: float(row[3]))[0], max(rows, key=lambda row: float(row[3]))[0]
    table = browser.find_element(By.ID, "per-class").text
    assert weakest in table and (best not in table or table.index(weakest) < table.index(best))
    # The 77-class matrix's labels are small: its most frequent mistake is also a table row, in words.
    import pandas as pd

    matrix = pd.read_csv(SHIPPED_RUN / "confusion_matrix.csv", index_col=0).to_numpy()
    np.fill_diagonal(matrix, 0)
    true, taken = np.unravel_index(matrix.argmax(), matrix.shape)
    names = pd.read_csv(SHIPPED_RUN / "confusion_matrix.csv", index_col=0).columns
    first_row = browser.find_element(By.CSS_SELECTOR, "#confusions tbody tr").text
    assert first_row.startswith(f"{names[true]} {names[taken]} {matrix.max()} "), first_row
    save_screenshot(browser, "serve_model.png")


def test_browser_on_a_phone_the_verdict_comes_before_the_settings(server, browser):
    """At 420 px the columns stack: the verdict and top-5 stand above the methods, and the class picker's text is
    not under its arrow."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.set_window_size(420, 900)
    try:
        browser.get(server)
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#sample input"))
        picker = browser.find_element(By.CSS_SELECTOR, "#sample input")
        picker.click()
        picker.send_keys("Banana_1.jpg", Keys.ENTER)
        wait_for(browser, lambda d: "Predicted: Banana" in status_text(d) and "Verdict" in d.find_element(By.ID, "top5").text)
        verdict = browser.find_element(By.ID, "top5").rect
        methods = browser.find_element(By.ID, "methods").rect
        assert verdict["y"] + verdict["height"] <= methods["y"], (verdict, methods)
        # The picker's text ends before its arrow begins.
        text_end, arrow_start = browser.execute_script("""
            const input = document.querySelector('#target input');
            const context = document.createElement('canvas').getContext('2d');
            const style = getComputedStyle(input);
            context.font = style.font;
            const start = input.getBoundingClientRect().left + parseFloat(style.paddingLeft);
            const icons = [...document.querySelectorAll('#target svg')].map(icon => icon.getBoundingClientRect().left);
            return [start + context.measureText(input.value).width, Math.min(...icons)];""")
        assert text_end <= arrow_start, (text_end, arrow_start)
        save_screenshot(browser, "serve_phone.png")
    finally:
        browser.set_window_size(1400, 1700)


FIRST_SCREEN = {"phone": (420, 800), "desktop": (1280, 800)}  # CSS pixels of the window's inside


def set_inner_size(driver, width, height):
    """The window sized so that its inside (the first screen a person sees) is ``width`` x ``height``."""
    inside = "return [window.innerWidth, window.innerHeight]"
    driver.set_window_size(width, height)  # headless Chromium keeps a 500 px window, but its inside is as wide
    wait_for(driver, lambda d: d.execute_script(inside)[0] == width, seconds=10)
    driver.set_window_size(width, 2 * height - driver.execute_script(inside)[1])
    wait_for(driver, lambda d: d.execute_script(inside) == [width, height], seconds=10)


def bottom_in_first_screen(driver, css):
    """How far below the first screen (scrolled to the top) the element ``css`` ends; <= 0 when it fits."""
    return driver.execute_script("""
        window.scrollTo(0, 0);
        const element = document.querySelector(arguments[0]);
        return element.getBoundingClientRect().bottom - window.innerHeight;""", css)


@pytest.mark.parametrize("screen", FIRST_SCREEN)
def test_browser_the_answer_is_in_the_first_screen_after_an_upload(server, browser, screen):
    """After an upload, the answer and its verdict fit the first screen of a phone; on a desktop the photo and the
    first heatmap do too.  Before it, the empty state's words point where the pickers are: above."""
    from selenium.webdriver.common.by import By

    set_inner_size(browser, *FIRST_SCREEN[screen])
    try:
        browser.get(server)
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
        assert status_text(browser).endswith("above: the answer comes here.")
        assert bottom_in_first_screen(browser, "#pickers") <= 0 and browser.find_element(By.ID, "pickers").rect[
            "y"] < browser.find_element(By.ID, "status").rect["y"]
        upload(browser, SAMPLES / "Eggplant_1.jpg")
        wait_for(browser, lambda d: "Predicted: Eggplant" in status_text(d) and "Verdict" in d.find_element(
            By.ID, "top5").text and d.find_elements(By.CSS_SELECTOR, "#heatmaps img"))
        wait_for(browser, lambda d: d.execute_script(
            "return [...document.querySelectorAll('#heatmaps img, #preview img')].every(i => i.complete)"))
        shown = ["#status", "#top5 p"] + (["#preview img", "#heatmaps img"] if screen == "desktop" else [])
        overflow = {css: bottom_in_first_screen(browser, css) for css in shown}
        assert all(pixels <= 0 for pixels in overflow.values()), overflow
        save_screenshot(browser, f"serve_first_screen_{screen}.png")
    finally:
        browser.set_window_size(1400, 1700)


# --- Bad input to the command itself ------------------------------------------------------------------------------


def test_serve_refuses_a_busy_port_and_mismatched_data_in_one_line(runner, trained_run):
    from fruitkeras.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(main, ["serve", str(trained_run["run_dir"]), "--port", str(port)])
    assert result.exit_code == 1 and f"cannot serve on 127.0.0.1:{port}" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1

    result = runner.invoke(main, ["serve", str(SHIPPED_RUN), "--data", str(trained_run["data"])])
    assert result.exit_code == 1 and "class mismatch" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, ["serve", "runs/no-such-run"])
    assert result.exit_code == 1 and "no such model file" in result.output


def test_browser_shows_the_verdict_and_gives_no_class_for_an_unfamiliar_photo(server, browser, tmp_path):
    """A cluttered scene gets the verdict 'unfamiliar photo' above the top-5, and the status line names no class;
    a sample photo of a trained class gets 'known' and its class, as `fruitkeras predict` says."""
    from selenium.webdriver.common.by import By

    rng = np.random.default_rng(3)
    scene = np.zeros((300, 400, 3), dtype=np.uint8) + rng.integers(0, 256, 3).astype(np.uint8)
    for _ in range(40):  # overlapping coloured boxes: a busy table, nothing like one fruit on white
        y, x = rng.integers(0, 280), rng.integers(0, 380)
        scene[y : y + rng.integers(10, 120), x : x + rng.integers(10, 120)] = rng.integers(0, 256, 3)
    photo = tmp_path / "table.jpg"
    Image.fromarray(scene).save(photo)
    browser.get(server)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
    upload(browser, photo)
    wait_for(browser, lambda d: "Unfamiliar photo" in status_text(d))
    assert "Predicted" not in status_text(browser)
    assert "Verdict: unfamiliar photo" in browser.find_element(By.ID, "top5").text
    answered = cli_json(photo)
    assert answered["verdict"] == "unfamiliar photo"
    # Page and command agree on whether the classes were guessed from a cut-out of the photo
    assert ("cut out of the photo" in browser.find_element(By.ID, "top5").text) == answered["cut_out"]
    clear_upload(browser)
    upload(browser, SAMPLES / "Eggplant_1.jpg")
    wait_for(browser, lambda d: "Predicted: Eggplant" in status_text(d))
    assert "Verdict: known" in browser.find_element(By.ID, "top5").text
    assert cli_json(SAMPLES / "Eggplant_1.jpg")["verdict"] == "known"


def test_browser_the_page_without_data_takes_uploads_and_logs_no_warning(browser):
    """Without --data the samples are the only picker; an upload clears it, and the server logs nothing for it."""
    from selenium.webdriver.common.by import By

    with serving() as (url, lines):
        browser.get(url)
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
        for photo in ("Eggplant_1.jpg", "Banana_1.jpg"):
            clear_upload(browser)
            upload(browser, SAMPLES / photo)
            wait_for(browser, lambda d: f"Predicted: {photo.split('_')[0]}" in status_text(d))
        time.sleep(1)  # what the server prints for the last upload
        served = "".join(lines[lines.index(next(line for line in lines if "serving" in line)) + 1:])
        assert "warn" not in served.lower(), served
