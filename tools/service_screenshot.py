r"""Drive the service's web page in headless Chromium: upload a video, wait for its tags, save a screenshot.

    python tools/service_screenshot.py --url http://127.0.0.1:8000 --video clip.webm --out docs/service.png

Needs selenium and Debian's chromium + chromium-driver (/usr/bin/chromedriver). The PNG is reduced to a
256-colour palette to stay small.
"""
import argparse
import os
import time

CHROMEDRIVER = "/usr/bin/chromedriver"


def browser(width=1000, height=1000):
    """A headless Chromium (Selenium WebDriver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(arg)
    if os.path.exists("/usr/bin/chromium"):
        options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def tag_on_page(driver, url, video, segment_seconds=1, token=None, seconds=120, shots=False):
    """Open the page, upload ``video`` (``shots``: with the Shots box ticked), wait until its tags are shown
    (or the job failed): the state text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(url + "/")
    if token:
        driver.find_element(By.ID, "token").send_keys(token)
    segments = driver.find_element(By.ID, "segment_seconds")
    segments.clear()
    segments.send_keys(str(segment_seconds))
    if shots:
        driver.find_element(By.ID, "with_shots").click()
    driver.find_element(By.ID, "file").send_keys(os.path.abspath(video))
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, seconds, poll_frequency=0.2).until(
        lambda d: d.find_element(By.ID, "state").text in ("done", "failed", "cancelled", "refused"))
    state = driver.find_element(By.ID, "state").text
    if state == "done":
        WebDriverWait(driver, 10).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#tags li")))
    return state


def save_png(driver, out):
    """A screenshot of the page, as a 256-colour PNG."""
    from PIL import Image
    raw = out + ".raw.png"
    driver.save_screenshot(raw)
    try:
        Image.open(raw).convert("RGB").quantize(256).save(out, optimize=True)
    finally:
        os.remove(raw)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--video", required=True, help="a video Chromium plays (WebM, MP4)")
    p.add_argument("--out", default="docs/service.png")
    p.add_argument("--segment_seconds", type=float, default=1)
    p.add_argument("--shots", action="store_true", help="tick the Shots box")
    p.add_argument("--token")
    args = p.parse_args()
    driver = browser()
    try:
        state = tag_on_page(driver, args.url, args.video, args.segment_seconds, args.token, shots=args.shots)
        if state != "done":
            raise SystemExit(f"error: the job ended {state}")
        time.sleep(0.5)  # the first video frame
        save_png(driver, args.out)
    finally:
        driver.quit()
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
