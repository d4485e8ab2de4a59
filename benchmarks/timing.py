"""Presentation timing of the trial runner in headless Chromium.

Shows a stimulus N times at 100, 250 and 500 ms with the runner's own
frame-locked `present()` (study_server/static/runner/timing.js), and, as the
baseline in the same browser, with the common setTimeout approach (show in a
frame, hide from a timer). Each displayed duration is measured between the
animation frames that showed and hid the image. Prints the distribution of
|displayed - requested| and the share within one frame, for both, and their ratio,
and for the frame-locked method the share of exact frame counts: round(displayed /
frame interval) equal to the planned frames (percept.rules.planned_frames), the rule
by which the server stores a trial as invalid (`frames`) and repeats it.

    .venv/bin/python benchmarks/timing.py [--trials 500] [--baseline-trials 100]
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from playwright.sync_api import sync_playwright

from percept.rules import planned_frames

ROOT = Path(__file__).resolve().parent.parent
TIMING_JS = ROOT / "study_server" / "static" / "runner" / "timing.js"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGE = """<!doctype html><html><body style="margin:0;background:#808080">
<canvas id="stim" width="256" height="256" style="visibility:hidden"></canvas>
<script type="module">
import { framesFor, measureFrameInterval, nextFrame, present } from "./timing.js";
const stim = document.getElementById("stim");
const ctx = stim.getContext("2d");
ctx.fillStyle = "#c33"; ctx.fillRect(0, 0, 256, 256);
window.frameMs = await measureFrameInterval(120);
window.frameLocked = async (ms, n) => {
  const frames = framesFor(ms, window.frameMs), out = [];
  for (let i = 0; i < n; i++) {
    const { onset, offset } = await present(stim, frames);
    out.push(offset - onset);
    await nextFrame();
  }
  return out;
};
window.withTimer = async (ms, n) => {
  const out = [];
  for (let i = 0; i < n; i++) {
    const onset = await nextFrame();
    stim.style.visibility = "visible";
    await new Promise((resolve) => setTimeout(resolve, ms));
    stim.style.visibility = "hidden";
    const offset = await nextFrame();  // the frame that shows the change
    out.push(offset - onset);
    await nextFrame();
  }
  return out;
};
window.ready = true;
</script></body></html>"""


def summary(errors: list[float], frame_ms: float) -> dict[str, float]:
    errors = sorted(errors)
    return {
        "median": statistics.median(errors),
        "p95": errors[int(0.95 * (len(errors) - 1))],
        "max": errors[-1],
        "within": sum(e < frame_ms for e in errors) / len(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--baseline-trials", type=int, default=100)
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 800, "height": 600})

        def serve(route):
            name = route.request.url.rsplit("/", 1)[-1]
            if name == "timing.js":
                route.fulfill(body=TIMING_JS.read_text(), content_type="text/javascript")
            else:
                route.fulfill(body=PAGE, content_type="text/html")

        page.route("http://bench.invalid/**", serve)
        page.goto("http://bench.invalid/index.html")
        page.wait_for_function("window.ready === true", timeout=30_000)
        frame_ms = page.evaluate("window.frameMs")
        print(
            f"headless Chromium, measured frame interval {frame_ms:.3f} ms "
            f"({1000 / frame_ms:.1f} Hz)"
        )
        print(
            f"{'exposure':>8}  {'method':<13} {'n':>4}  {'median':>7} {'p95':>7} {'max':>7}"
            "  within 1 frame   (|displayed - requested|, ms)"
        )
        exact = [0, 0]  # displays with exactly the planned frames, displays
        for ms in (100, 250, 500):
            rows = {}
            for method, n in (("frameLocked", args.trials), ("withTimer", args.baseline_trials)):
                shown = page.evaluate(
                    f"window.{method}({ms}, {n})",
                )
                rows[method] = summary([abs(d - ms) for d in shown], frame_ms)
                s = rows[method]
                label = "frame-locked" if method == "frameLocked" else "setTimeout"
                print(
                    f"{ms:>6} ms  {label:<13} {n:>4}  {s['median']:7.2f} {s['p95']:7.2f} "
                    f"{s['max']:7.2f}  {100 * s['within']:6.1f} %"
                )
                if method == "frameLocked":
                    # As the runner reports and the server checks it (3-decimal frame_ms).
                    sent = round(frame_ms, 3)
                    planned = planned_frames(ms, sent)
                    exact[0] += sum(math.floor(d / frame_ms + 0.5) == planned for d in shown)
                    exact[1] += len(shown)
            base, ours = rows["withTimer"], rows["frameLocked"]
            ratio = ours["within"] / max(base["within"], 1e-9)
            print(f"{'':>8}  share within one frame: {ratio:.2f}x the setTimeout baseline")
        print(
            f"frame-locked exact frame counts: {exact[0]} of {exact[1]} "
            f"({100 * exact[0] / exact[1]:.2f} %); the rest would be stored invalid and repeated"
        )
        browser.close()


if __name__ == "__main__":
    main()
