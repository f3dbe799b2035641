"""``derain demo`` driven in headless Chromium (Debian's ``chromium``; no browser is downloaded).

Playwright drives the system Chromium. Every request that leaves the demo's own address is
blocked and recorded, so the test also shows that the page works with no network.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from derain.data.synth import add_rain
from derain.imageio import read_image, write_image
from test_pretrained import install_tiny_pretrained

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def demo_url(tmp_path, monkeypatch):
    from derain.demo.app import launch

    install_tiny_pretrained(tmp_path / "pretrained", monkeypatch)
    port = free_port()
    app = launch(port=port, device="cpu", block=False)
    yield f"http://127.0.0.1:{port}"
    app.close()


def test_upload_derain_compare_download(demo_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    clean = read_image(Path(__file__).parent / "data" / "photos" / "rocket.png")[..., :3]
    rainy, _, _ = add_rain(clean, "heavy", seed=3)
    photo = write_image(tmp_path / "rainy rocket.jpg", rainy)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"")
    offline_violations: list[str] = []

    def only_local(route):
        if route.request.url.startswith(demo_url):
            route.continue_()
        else:
            offline_violations.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            page.route("**/*", only_local)
            page.goto(demo_url)
            upload = page.locator("#upload input[type=file]")
            status = page.locator("#status")

            page.locator("#examples button[aria-label='Thumbnail 1 of 3']").click()
            expect(page.locator("#upload")).to_contain_text("astronaut_light")
            page.locator("#upload button[aria-label='Clear']").first.click()

            upload.set_input_files(broken)
            expect(page.locator("#upload")).to_contain_text("broken.png")
            page.locator("#run").click()
            expect(status).to_contain_text("Cannot use this upload: empty file", timeout=20_000)

            page.locator("#upload button[aria-label='Clear']").first.click()
            upload.set_input_files(photo)
            expect(page.locator("#upload")).to_contain_text("rainy rocket.jpg")
            page.locator("#run").click()
            expect(status).to_contain_text("derained in", timeout=30_000)
            expect(status).to_contain_text(f"{rainy.shape[1]} × {rainy.shape[0]} pixels")

            images = page.locator("#slider img")
            expect(images).to_have_count(2)
            sources = [images.nth(i).get_attribute("src") for i in range(2)]
            assert all(s and s.endswith(".png") for s in sources) and sources[0] != sources[1]

            with page.expect_download() as download_info:
                page.locator("#download").click()
            downloaded = tmp_path / "downloaded.png"
            download_info.value.save_as(downloaded)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
        finally:
            browser.close()

    restored = read_image(downloaded)
    assert restored.shape == rainy.shape
    assert np.abs(restored.astype(int) - read_image(photo).astype(int)).mean() > 1
    assert offline_violations == []
