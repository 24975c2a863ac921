"""Screenshot of the demo page mid-denoising, for the docs.

    python benchmarks/screenshot.py --model models/minilm-default --out docs/screenshot-denoising.png

Serves the model on a free loopback port, opens the page in headless Chromium (Debian's
``chromium`` driven by Playwright), inverts a sentence and captures the page when the animation
shows step ``--step`` (default: half of the steps). The page's timers run on a frozen clock, so the
picture always shows the same step whatever the machine's speed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chromium import find_chromium, launch  # noqa: E402

log = logging.getLogger("screenshot")

STEP_MS = 160  # the page's animation pace (app.js)
SENTENCE = "The patient was prescribed antibiotics for a chest infection."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="model folder or name under models/")
    ap.add_argument("--out", default="docs/screenshot-denoising.png")
    ap.add_argument("--text", default=SENTENCE)
    ap.add_argument("--strategy", default=None, help="decoding strategy (the model's default)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (the model's default)")
    ap.add_argument("--step", type=int, default=None, help="which step to capture (default: half way)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--width", type=int, default=1200)
    return ap.parse_args(argv)


def wait_for_stream(page, num_steps: int, timeout_s: float = 120.0) -> None:
    """Poll (the page's CSP forbids wait_for_function's eval) until every event has arrived."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(f"state.steps.length >= {num_steps} && state.final !== null"):
        if page.get_attribute("#final-text", "data-state") == "error" or time.monotonic() > deadline:
            raise RuntimeError(f"the inversion did not finish: {page.inner_text('#status')}")
        time.sleep(0.05)


def capture(url: str, args: argparse.Namespace, num_steps: int, step: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw, Path(args.chromium))
        page = browser.new_page(viewport={"width": args.width, "height": 900}, device_scale_factor=1)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.clock.install(time=0)
        page.goto(url)
        page.wait_for_selector("#model option", state="attached")
        page.clock.pause_at(10_000)  # from here on, timers fire only when run_for() advances the clock
        page.fill("#text", args.text)
        if args.strategy:
            page.select_option("#strategy", args.strategy)
        page.fill("#steps", str(num_steps))
        page.click("#invert")
        wait_for_stream(page, num_steps)
        page.clock.run_for(STEP_MS * step + STEP_MS // 2)
        shown = page.get_attribute("#grid", "data-step")
        if shown != str(step):
            raise RuntimeError(f"the page shows step {shown}, expected {step}")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    if errors:
        raise RuntimeError(f"console errors on the page: {errors}")
    log.info("wrote %s (step %d of %d)", out, step, num_steps)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    chromium = find_chromium(args.chromium)
    if chromium is None:
        log.error("no Chromium at %s (apt-get install chromium)", args.chromium)
        return 2
    from unembed.server.app import create_app, load_inverters, serve_in_thread

    inverters = load_inverters([args.model])
    inv = next(iter(inverters.values()))
    num_steps = args.steps or inv.cfg.sample.num_steps
    step = args.step or max(1, num_steps // 2)
    if not 1 <= step <= num_steps:
        log.error("--step must be between 1 and %d", num_steps)
        return 2
    with serve_in_thread(create_app(inverters)) as url:
        capture(url, args, num_steps, step)
    return 0


if __name__ == "__main__":
    sys.exit(main())
