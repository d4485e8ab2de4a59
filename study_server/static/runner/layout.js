// Where the stimulus goes. The trial screen fills the window: the stage sits between two
// bands of equal height (the prompt above, the key reminder and the buttons below), so
// its centre is the window's centre and every control is on screen without scrolling.
// The fit is made between trials only; nothing moves while a trial runs.

// Room kept free left and right of the stage, in CSS px.
const SIDE_MARGIN = 16;
// The stage is never made smaller than this, even in a window too small for the study.
const MIN_SIDE = 48;

/**
 * The shown size of a `width` × `height` image in a `room` (CSS px).
 * `display.size_px` set: that size for the longer side. Not set: the largest whole
 * multiple of the image that fits, so that every pixel stays sharp. Either way never
 * more than `display.max_upscale` times the image, and shrunk to fit the room.
 * Returns {width, height, scale}.
 */
export function shownSize(width, height, room, display) {
  const fit = Math.min(room.width / width, room.height / height);
  const wanted = display.size_px ? display.size_px / Math.max(width, height) : display.max_upscale;
  let scale = Math.min(wanted, display.max_upscale, fit);
  if (!display.size_px && scale >= 1) scale = Math.floor(scale);
  return { width: Math.floor(width * scale), height: Math.floor(height * scale), scale };
}

/** The height a band needs for its content (flex bands: margins included). */
function contentHeight(band) {
  band.style.height = "auto";
  return band.getBoundingClientRect().height;
}

/**
 * Lay the trial screen out for an image of `width` × `height` in the current window.
 * The progress line sits right under the page header; the band above the stage is
 * tall enough for it and the prompt, the band below for the reminder and the buttons,
 * and both get the taller of the two, so the stage is centred.
 */
export function fitTrial(trialScreen, width, height, display) {
  const header = document.querySelector(".runner-header");
  const progress = trialScreen.querySelector("[data-progress-box]");
  const above = trialScreen.querySelector('[data-band="above"]');
  const below = trialScreen.querySelector('[data-band="below"]');
  const stage = trialScreen.querySelector("[data-stage]");
  const view = { width: document.documentElement.clientWidth,
    height: document.documentElement.clientHeight };
  progress.style.top = `${Math.ceil(header.getBoundingClientRect().bottom)}px`;
  const top = progress.getBoundingClientRect().bottom + contentHeight(above);
  const band = Math.ceil(Math.max(top, contentHeight(below)));
  const room = { width: Math.max(MIN_SIDE, view.width - 2 * SIDE_MARGIN),
    height: Math.max(MIN_SIDE, view.height - 2 * band) };
  const shown = shownSize(width, height, room, display);
  above.style.height = below.style.height = `${band}px`;
  stage.style.width = `${shown.width}px`;
  stage.style.height = `${shown.height}px`;
  // Whole multiples with square pixels; any other scale smooth (no uneven blocks).
  stage.dataset.rendering = Number.isInteger(shown.scale) ? "pixelated" : "smooth";
  return shown;
}
