// Frame-locked timing. Every visual change happens inside a requestAnimationFrame
// callback, so it reaches the screen on the next refresh; the callback's timestamp is
// the frame's time on the performance.now() clock.

/** Resolves with the timestamp of the next animation frame. */
export function nextFrame() {
  return new Promise((resolve) => requestAnimationFrame(resolve));
}

/** Median interval between animation frames, in ms, over `samples` frames. */
export async function measureFrameInterval(samples = 60) {
  const intervals = [];
  let last = await nextFrame();
  for (let i = 0; i < samples; i++) {
    const now = await nextFrame();
    intervals.push(now - last);
    last = now;
  }
  intervals.sort((a, b) => a - b);
  return intervals[Math.floor(intervals.length / 2)];
}

/** Whole frames closest to `ms` at this frame interval (at least one). */
export function framesFor(ms, frameMs) {
  return Math.max(1, Math.round(ms / frameMs));
}

/** Wait `frames` frames from now; resolves with the last frame's timestamp. */
export async function waitFrames(frames) {
  let t = await nextFrame();
  for (let i = 1; i < frames; i++) t = await nextFrame();
  return t;
}

/**
 * Show `element` for exactly `frames` frames (or, with frames null, until `until`
 * resolves). Returns {onset, offset}: the timestamps of the frames that showed and hid it.
 */
export async function present(element, frames, until = null) {
  const onset = await nextFrame();
  element.style.visibility = "visible";
  let offset = onset;
  if (frames === null) {
    await until;
    offset = await nextFrame();
  } else {
    for (let i = 0; i < frames; i++) offset = await nextFrame();
  }
  element.style.visibility = "hidden";
  return { onset, offset };
}
