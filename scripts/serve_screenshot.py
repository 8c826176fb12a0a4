"""The README's picture of `videoldm serve`: the page after one generation, as a person sees it.

    python scripts/serve_screenshot.py [--model DIR] [--prompt TEXT] [--seed N] [--out docs/images/serve.png]

Serves the page in this process (default: the shipped tiny model, the server's default limits), opens it in
Debian's headless chromium with Playwright (no browser download), types the prompt, sets the seed, clicks
Generate, waits for the video, stops it half-way and saves a screenshot. On a busy 2-core machine run it with
OMP_NUM_THREADS=1 (two threads shared with another process run far slower).
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import torch
from playwright.sync_api import expect, sync_playwright

from videoldm.assets import shipped_model_dir
from videoldm.ui import CHROMIUM_ARGS
from videoldm.ui.app import launch
from videoldm.ui.jobs import Limits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a Video LDM folder (default: the shipped model)")
    parser.add_argument("--prompt", default="a red circle moving right")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/images/serve.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # as the CLI does: denormals slow CPUs down up to 10x

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    page_app = launch(args.model or shipped_model_dir(), Limits(), port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=list(CHROMIUM_ARGS))
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#prompt textarea", args.prompt)
            page.fill("#seed input", str(args.seed))
            page.click("#generate")
            expect(page.locator("#info")).to_contain_text("seed", timeout=600_000)
            page.wait_for_function("document.querySelector('#video video').readyState >= 2", timeout=60_000)
            page.evaluate(
                "() => { const v = document.querySelector('#video video'); v.pause(); v.currentTime = v.duration / 2; }"
            )
            page.wait_for_timeout(500)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            print(f"{args.out}: {page.inner_text('#info')}")
            browser.close()
    finally:
        page_app.close()


if __name__ == "__main__":
    main()
