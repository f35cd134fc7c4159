import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


# The built site, served locally, and one headless Chromium: shared by the browser tests of
# test_site.py and test_site_quiz.py (one per test process; sync Playwright allows only one).
@pytest.fixture(scope="session")
def site_url():
    import functools
    import http.server
    import threading

    from test_site import SITE, _Handler, _unavailable

    if not (SITE / "index.html").exists():
        _unavailable(f"no built site in {SITE}: run `jupyter-book build .` first")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(SITE)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="session")
def browser(site_url):
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    from test_site import CHROMIUM, CHROMIUM_ARGS, _unavailable

    if not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
