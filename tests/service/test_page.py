"""The web page in headless Chromium (Selenium) against a real server: upload a generated video, wait for
the result, the page shows videotag.py's tags, segments, shots and tag ranges, and clicking one seeks the
video."""
import os
import shutil
import sys

import pytest

from service_setup import ROOT, Server, make_models, videotag_results, write_clip

sys.path.insert(0, os.path.join(ROOT, "tools"))
from service_screenshot import CHROMEDRIVER, browser, tag_on_page  # noqa: E402

pytestmark = pytest.mark.skipif(not shutil.which("chromium") and not os.path.exists(CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver")


def write_webm(path, seconds=4, fps=10, size=(64, 48)):
    """A VP8 WebM (Chromium plays it): a new plain colour every half second."""
    return write_clip(path, 7, seconds, size, fourcc="VP80", fps=fps)


@pytest.fixture(scope="module")
def page(tmp_path_factory, tsn50_release):
    from selenium.webdriver.common.by import By
    root = tmp_path_factory.mktemp("page")
    (root / "models").mkdir()
    flags = make_models(root / "models", tsn50_release)
    video = write_webm(root / "colours.webm")
    from video_tag.timeline import TimelineOptions
    reference = videotag_results(root / "models", [video], root / "ref", segment_seconds=1.0,
                                 timeline=TimelineOptions(shots=True))[video]
    server = Server(root / "data", flags)
    driver = browser()
    try:
        yield server, driver, video, reference, By
    finally:
        driver.quit()
        server.stop()


def test_upload_then_tags_segments_shots_and_seeking(page):
    server, driver, video, reference, By = page
    assert tag_on_page(driver, server.url, video, segment_seconds=1, shots=True) == "done"
    shown = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#tags li")]
    assert shown == [f"{t['class_name']} {100 * t['probability']:.1f}%" for t in reference["tags"][:5]]  # topk 5
    segments = driver.find_elements(By.CSS_SELECTOR, "#segments li")
    assert [float(li.get_attribute("data-start")) for li in segments] == [s["start"] for s in reference["segments"]]
    assert segments[2].text.startswith("2.0 s – 3.0 s " + reference["segments"][2]["tags"][0]["class_name"])
    assert len(driver.find_elements(By.CSS_SELECTOR, "#timeline .range")) == len(reference["segments"])
    player = driver.find_element(By.ID, "player")
    driver.execute_script("arguments[0].muted = true;", player)
    segments[2].click()
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return arguments[0].currentTime", player) >= 2.0)
    assert driver.execute_script("return arguments[0].currentTime", player) < 3.5
    ranges = driver.find_elements(By.CSS_SELECTOR, "#timeline .range")
    ranges[0].click()
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return arguments[0].currentTime", player) < 1.5)
    # the shots: listed and drawn where videotag.py --shots puts them; clicking the last one seeks to it
    shots, blocks = (driver.find_elements(By.CSS_SELECTOR, s) for s in ("#shots li", "#shotline .shot"))
    assert len(reference["shots"]) >= 3
    starts = [s["start"] for s in reference["shots"]]
    assert [float(li.get_attribute("data-start")) for li in shots] == starts
    assert [float(b.get_attribute("data-start")) for b in blocks] == starts
    assert shots[1].text.startswith(f"{starts[1]:.1f} s – {reference['shots'][1]['end']:.1f} s "
                                    + reference["shots"][1]["tags"][0]["class_name"])
    # drawn where they are in the video: left edge at start / duration of the bar's width
    width = driver.find_element(By.ID, "shotline").size["width"]
    duration = reference["timeline"]["metadata"]["duration"]
    lefts = [float(b.value_of_css_property("left").rstrip("px")) for b in blocks]
    assert lefts == pytest.approx([width * start / duration for start in starts], abs=1.5)
    blocks[-1].click()
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return arguments[0].currentTime", player) >= starts[-1])
    # the tag ranges of the timeline, one line each
    assert len(driver.find_elements(By.CSS_SELECTOR, "#ranges li")) == len(reference["timeline"]["ranges"]) > 0


def test_a_bad_file_shows_its_reason(page, tmp_path):
    server, driver, video, reference, By = page
    bad = tmp_path / "bad.webm"
    bad.write_bytes(b"\x1aE\xdf\xa3" + os.urandom(3000))
    assert tag_on_page(driver, server.url, str(bad)) == "failed"
    assert driver.find_element(By.ID, "error").text  # the reason, as the API gives it
    assert not driver.find_element(By.ID, "result").is_displayed()
