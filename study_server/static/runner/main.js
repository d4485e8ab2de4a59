// The trial runner: eligibility → consent → device check → sign-up → instructions →
// practice → main → completion. Nothing is stored on the server before the sign-up, which
// comes only after consent and the device check; after consent, "Stop and return the
// study" is on every screen. It talks only to the participant API; it never knows which
// images are real.

import { ApiError, Outbox, requestJson, withRetries } from "./api.js";
import { fitTrial } from "./layout.js";
import { framesFor, measureFrameInterval, nextFrame, present, waitFrames } from "./timing.js";

const settings = JSON.parse(document.getElementById("percept-settings").textContent);
const params = new URLSearchParams(location.search);
const store = {
  key: (name) => `percept:${settings.slug}:${name}`,
  get(name) {
    return JSON.parse(localStorage.getItem(this.key(name)) || "null");
  },
  set(name, value) {
    localStorage.setItem(this.key(name), JSON.stringify(value));
  },
  remove(name) {
    localStorage.removeItem(this.key(name));
  },
};
const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
const KEY_NAMES = { space: " ", enter: "enter", arrowleft: "arrowleft", arrowright: "arrowright",
  arrowup: "arrowup", arrowdown: "arrowdown" };
const KEY_LABELS = { space: "Space", enter: "Enter", arrowleft: "←", arrowright: "→",
  arrowup: "↑", arrowdown: "↓" };

// --- Screens -------------------------------------------------------------------------

// Once the participant stopped, only these screens may still show.
const STOPPED_SCREENS = new Set(["returned", "invalid"]);
// Where a Prolific participant returns a study (the link on the return screens).
const PROLIFIC_HOME = "https://app.prolific.com/";
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function show(name) {
  if (leave.stopped && !STOPPED_SCREENS.has(name)) return;
  for (const screen of $$("[data-screen]")) screen.hidden = screen.dataset.screen !== name;
  document.body.dataset.current = name;
  const button = $(`[data-screen="${name}"] button.primary:not([disabled])`);
  if (button) button.focus();
}

/** Show a screen with a Continue button; resolves when it is pressed (or Enter/Space). */
function continueFrom(name) {
  show(name);
  const button = $(`[data-screen="${name}"] [data-action="continue"]`);
  return new Promise((resolve) => {
    button.addEventListener("click", () => resolve(), { once: true });
  });
}

/** Each platform's words for giving a study back, on every screen that needs them. */
function fillReturnText() {
  for (const box of $$("[data-return-text]")) {
    if (settings.platform === "prolific") {
      const link = document.createElement("a");
      link.href = PROLIFIC_HOME;
      link.textContent = "Back to Prolific";
      link.dataset.prolificLink = "";
      box.replaceChildren("Please return the study on Prolific (“Return submission”), "
        + "so that your place goes to someone else and you are not penalised. ", link);
    } else if (settings.platform === "mturk") {
      box.textContent = "Please return the HIT on MTurk (the “Return” button), so "
        + "that your place goes to someone else and you are not penalised.";
    } else {
      box.textContent = "You may now close this page.";
    }
  }
}

function labelKeys() {
  for (const kbd of $$("[data-key-label]")) {
    const key = settings.keys[kbd.dataset.keyLabel];
    kbd.textContent = KEY_LABELS[key] || key.toUpperCase();
  }
}

// --- Who is this participant? ----------------------------------------------------------

/** Platform ids from the URL, or null when the link lacks what the platform needs. */
function identity() {
  if (settings.platform === "prolific") {
    const pid = params.get("PROLIFIC_PID");
    if (!pid) return null;
    return { key: pid, body: { prolific_pid: pid, study_id: params.get("STUDY_ID") || undefined,
      session_id: params.get("SESSION_ID") || undefined } };
  }
  if (settings.platform === "mturk") {
    const assignment = params.get("assignmentId");
    if (assignment === "ASSIGNMENT_ID_NOT_AVAILABLE") return { preview: true };
    const worker = params.get("workerId");
    const hit = params.get("hitId");
    const submitTo = params.get("turkSubmitTo");
    if (!assignment || !worker || !hit || !submitTo) return null;
    return { key: worker, body: { worker_id: worker, assignment_id: assignment, hit_id: hit,
      turk_submit_to: submitTo } };
  }
  let clientId = store.get("client_id");
  if (!clientId) {
    clientId = `c-${crypto.randomUUID()}`;
    store.set("client_id", clientId);
  }
  return { key: clientId, body: { client_id: clientId } };
}

const PID_FIELD = { prolific: "prolific_pid", mturk: "worker_id", link: "client_id" };

/** Ask the server, before consent, whether this person can take the study (stores nothing). */
async function eligible(who) {
  const query = new URLSearchParams({ [PID_FIELD[settings.platform]]: who.key });
  if (screen.width > 0 && screen.height > 0) {
    query.set("width", Math.round(screen.width));
    query.set("height", Math.round(screen.height));
  }
  // No mouse, trackpad or pen: a phone or a tablet alone (some studies need a mouse).
  query.set("touch_only", String(!matchMedia("(any-pointer: fine)").matches));
  let reply;
  try {
    reply = await withRetries(() =>
      requestJson("GET", `/api/v1/studies/${settings.slug}/eligibility?${query}`));
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    reply = { eligible: false, reason: e.code, message: e.message };
  }
  if (!reply.eligible) refuse(reply.reason, reply.message);
  return reply.eligible;
}

/** The screen for a refusal code from the eligibility check or the sign-up. */
function refuse(code, message) {
  const screens = { study_full: "full", already_completed: "completed-before",
    returned: "returned-before", device_unsupported: "unsupported" };
  if (code === "screen_too_small") {
    const device = settings.device;
    for (const box of $$("[data-min-size]")) box.textContent = `${device.min_width} × ${device.min_height}`;
    $("[data-screen-size]").textContent = `${screen.width} × ${screen.height}`;
    return show("too-small");
  }
  if (screens[code]) return show(screens[code]);
  if (["study_draft", "study_paused", "study_closed"].includes(code)) {
    $("[data-not-open-reason]").textContent = message;
    return show("not-open");
  }
  $("[data-invalid-reason]").textContent = message;
  return show("invalid");
}

/** The consent screen: true for "I agree", false for "I do not agree" (nothing is sent). */
function askConsent() {
  show("consent");
  return new Promise((resolve) => {
    $('[data-action="consent"]').addEventListener("click", () => resolve(true), { once: true });
    $('[data-action="decline"]').addEventListener("click", () => resolve(false), { once: true });
  });
}

/** Take a place (after consent and the device check); the token, or null when refused. */
async function signUp(who) {
  const body = { consent: true, ...who.body, user_agent: navigator.userAgent.slice(0, 1000),
    screen: { width: screen.width, height: screen.height,
      device_pixel_ratio: window.devicePixelRatio } };
  try {
    const reply = await withRetries(
      () => requestJson("POST", `/api/v1/studies/${settings.slug}/participants`, { body }),
      () => { $("[data-net]").hidden = false; },
    );
    $("[data-net]").hidden = true;
    store.set("session", { token: reply.token, who: who.key });
    return reply.token;
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    // Places can fill between the eligibility check and now.
    refuse(e.code, e.message);
    return null;
  }
}

// --- Stopping -----------------------------------------------------------------------------

// What "Stop and return the study" needs: the session's token (none before sign-up) and
// the answers still on their way.
// `unsent`: answers given but not yet in the outbox (the mask may still be showing).
const leave = { offered: false, stopped: false, token: null, outbox: null, unsent: 0 };

function offerStop() {
  if (leave.offered) return;
  leave.offered = true;
  const button = $('[data-action="stop"]');
  const panel = $("[data-stop-confirm]");
  button.hidden = false;
  button.addEventListener("click", () => {
    panel.hidden = false;
    $('[data-action="stop-no"]').focus();
  });
  $('[data-action="stop-no"]').addEventListener("click", () => { panel.hidden = true; });
  $('[data-action="stop-yes"]').addEventListener("click", () => stop(), { once: true });
}

/** Give the study back: the place is freed on the server at once, nothing goes on here. */
async function stop() {
  show("returned");
  leave.stopped = true;
  $("[data-stop-confirm]").hidden = true;
  $('[data-action="stop"]').hidden = true;
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  const status = $("[data-return-status]");
  if (!leave.token) {
    status.textContent = "Nothing about you has been stored.";
    return;
  }
  // Answers already given are kept: let the last ones arrive first (briefly), or an
  // answer could reach the server after its trial was given back.
  const until = performance.now() + 3000;
  while (leave.unsent > 0 && performance.now() < until) await sleep(50);
  if (leave.outbox) {
    await Promise.race([leave.outbox.drained(), sleep(Math.max(0, until - performance.now()))]);
  }
  try {
    await withRetries(() => requestJson("POST", "/api/v1/session/return", { token: leave.token }));
    status.textContent = "Your place has been given back. Thank you for your time.";
  } catch (e) {
    status.textContent = "Your session is already closed.";
  }
  store.remove("session");
  store.remove("outbox");
}

// --- Images ------------------------------------------------------------------------------

/** Loads and decodes stimuli ahead of time, so a trial never waits on the network. */
class Images {
  constructor() {
    this.loaded = new Map();
  }

  get(url) {
    if (!this.loaded.has(url)) {
      this.loaded.set(url, withRetries(async () => {
        const img = new Image();
        img.src = url;
        try {
          await img.decode();
        } catch (e) {
          throw new ApiError(0, "network", `image ${url} did not load`);
        }
        return img;
      }));
    }
    return this.loaded.get(url);
  }

  /** Start loading the next `count` trials' images, a few at a time. */
  preload(trials, count = 40) {
    for (const trial of trials.slice(0, count)) this.get(trial.image);
  }
}

// --- A trial -------------------------------------------------------------------------------

function drawNoise(canvas, width, height) {
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  for (let i = 0; i < pixels.data.length; i += 4) {
    const grey = Math.floor(Math.random() * 256);
    pixels.data[i] = pixels.data[i + 1] = pixels.data[i + 2] = grey;
    pixels.data[i + 3] = 255;
  }
  context.putImageData(pixels, 0, 0);
}

/** Resolves with the first answer by key or button after `armed` becomes true. */
function waitForAnswer(state) {
  const buttons = $$("[data-choice]");
  return new Promise((resolve) => {
    const finish = (choice, time, input) => {
      leave.unsent += 1;
      document.removeEventListener("keydown", onKey);
      for (const b of buttons) b.removeEventListener("pointerup", onButton);
      for (const b of buttons) b.disabled = true;
      resolve({ choice, time, input });
    };
    const onKey = (event) => {
      if (!state.armed || event.repeat || leave.stopped) return;
      const key = event.key.toLowerCase();
      for (const choice of ["real", "fake"]) {
        const wanted = KEY_NAMES[settings.keys[choice]] || settings.keys[choice];
        if (key === wanted) {
          event.preventDefault();
          finish(choice, event.timeStamp, "key");
        }
      }
    };
    const onButton = (event) => {
      if (!state.armed || leave.stopped) return;
      finish(event.currentTarget.dataset.choice, event.timeStamp,
        event.pointerType === "touch" ? "touch" : "button");
    };
    document.addEventListener("keydown", onKey);
    for (const b of buttons) b.addEventListener("pointerup", onButton);
  });
}

async function runTrial(trial, run) {
  const fixation = $("[data-fixation]");
  const mask = $("[data-mask]");
  const prompt = $("[data-prompt]");
  // Put the already decoded image itself on the stage: a new <img> with the same URL
  // would decode again and might miss the onset frame.
  const image = await run.images.get(trial.image);
  image.className = "stimulus";
  image.alt = "";
  image.dataset.stimulus = "";
  image.style.visibility = "hidden";
  $("[data-stimulus]").replaceWith(image);
  const stimulus = image;
  // Between trials only: the window may have changed since the last one.
  fitTrial($('[data-screen="trial"]'), image.naturalWidth, image.naturalHeight, settings.display);
  const instruction = trial.instruction
    ? `Attention check: for this image, answer ${settings.labels[trial.instruction].toUpperCase()}.`
    : "";
  prompt.textContent = instruction || "\u00a0";
  const exposure = trial.adaptive ? run.staircaseMs : trial.exposure_ms;
  // The frame interval as sent: the server plans the frames from this very number.
  const frameMs = round(run.frameMs, 3);
  const frames = exposure === null ? null : framesFor(exposure, frameMs);

  // Invalid when the page is hidden or loses focus while the image is up.
  const state = { armed: false, exposing: false, invalid: null };
  const onHidden = () => {
    if (state.exposing && !state.invalid) state.invalid = document.hidden ? "hidden" : "blur";
  };
  document.addEventListener("visibilitychange", onHidden);
  window.addEventListener("blur", onHidden);

  if (run.timing.fixation_ms > 0) {
    fixation.style.visibility = "visible";
    await waitFrames(framesFor(run.timing.fixation_ms, run.frameMs));
    fixation.style.visibility = "hidden";
  }
  const answer = waitForAnswer(state);
  state.exposing = true;
  const arm = nextFrame().then(() => {
    state.armed = true;
    for (const b of $$("[data-choice]")) b.disabled = false;
  });
  const { onset, offset } = await present(stimulus, frames, answer);
  state.exposing = false;
  await arm;
  if (run.timing.mask_ms > 0) {
    drawNoise(mask, image.naturalWidth, image.naturalHeight);
    await present(mask, framesFor(run.timing.mask_ms, run.frameMs));
  }
  const { choice, time, input } = await answer;
  document.removeEventListener("visibilitychange", onHidden);
  window.removeEventListener("blur", onHidden);
  prompt.textContent = "\u00a0";
  const displayed = offset - onset;
  const shown = Math.round(displayed / run.frameMs);
  // A busy computer can hold the image for more frames than planned: invalid, and the
  // server (which checks this too) shows the image again at the end of the block.
  if (frames !== null && shown !== frames && state.invalid === null) state.invalid = "frames";
  const body = {
    choice,
    rt_ms: round(Math.max(0, time - onset)),
    onset_ms: round(onset),
    displayed_ms: round(displayed),
    frames: shown,
    frame_ms: frameMs,
    valid: state.invalid === null,
    input,
    client_sent_at: Date.now(),
  };
  if (state.invalid) body.invalid_reason = state.invalid;
  if (trial.adaptive) body.exposure_ms = exposure;
  return body;
}

const round = (x, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

// How long practice feedback stays up (FEEDBACK_S in study_server/instructions.py).
const FEEDBACK_MS = 900;

/** Practice feedback: right or not, and what the image was (the server says). */
async function showFeedback(reply) {
  const feedback = $("[data-feedback]");
  if (!reply?.feedback) return;
  const { correct, answer } = reply.feedback;
  $("[data-feedback-verdict]").textContent = correct ? "Correct" : "Not quite";
  const label = document.createElement("strong");
  label.textContent = settings.labels[answer];
  $("[data-feedback-answer]").replaceChildren("This image was ", label);
  feedback.className = `feedback ${correct ? "right" : "wrong"}`;
  feedback.style.visibility = "visible";
  await sleep(FEEDBACK_MS);
  feedback.style.visibility = "hidden";
}

// --- Blocks ------------------------------------------------------------------------------

async function runBlock(name, trials, run) {
  const all = run.session.trials.filter((t) => t.block === name);
  if (!trials.length) return;
  const practice = name === "practice";
  $("[data-block-title]").textContent = practice ? "Practice" : "The study";
  const feedback = run.session.study.practice_feedback
    ? " After each, you will see whether you were right, and what the image was." : "";
  $("[data-block-text]").textContent = practice
    ? `First ${all.length} practice images.${feedback}`
    : `Now ${all.length} images, without feedback. Answer as quickly and as accurately as you can.`;
  if (trials.length === all.length) await continueFrom("block");
  $("[data-progress-box]").style.visibility = practice ? "hidden" : "visible";
  show("trial");
  for (let i = 0; i < trials.length; i++) {
    const trial = trials[i];
    run.images.preload(trials.slice(i + 1));
    await fullScreenKept();
    if (leave.stopped) return;
    if (!practice) showProgress(run);
    if (trial.adaptive) {
      // The staircase lives on the server: wait for the previous answer's reply to know
      // the next exposure. Offline, go on after a while with the last exposure known.
      await Promise.race([run.lastAck, new Promise((r) => setTimeout(r, 5000))]);
    }
    const body = await runTrial(trial, run);
    const acked = run.outbox.add(trial.id, body);
    leave.unsent -= 1;
    if (leave.stopped) return;
    run.lastAck = acked;
    run.done.add(trial.id);
    if (!practice) {
      const { done, total } = showProgress(run);
      if (breakDue(done, total, run.session.study.response.break_every)) {
        $("[data-break-done]").textContent = done;
        $("[data-break-total]").textContent = total;
        await continueFrom("break");
        show("trial");
      }
    } else if (run.session.study.practice_feedback) {
      // Feedback comes from the server (the browser never knows the answer); offline,
      // the practice goes on without it after a few seconds.
      const reply = await Promise.race([acked, new Promise((r) => setTimeout(r, 4000))]);
      await showFeedback(reply);
    }
  }
}

/**
 * "Image 37 of 207" and the bar, from the session's trial list and the answers given
 * (so a reload shows the same); returns {done, total} main trials.
 */
function showProgress(run) {
  const main = run.session.trials.filter((t) => t.block === "main");
  const done = main.filter((t) => run.done.has(t.id)).length;
  const total = main.length;
  $("[data-progress]").style.width = `${(100 * done) / total}%`;
  $("[data-progress-text]").textContent = `Image ${Math.min(done + 1, total)} of ${total}`;
  return { done, total };
}

/** A break after every `every` main trials, but none within the last 10% of them. */
function breakDue(done, total, every) {
  return every > 0 && done % every === 0 && total - done >= total / 10;
}

// --- Full screen -------------------------------------------------------------------------

// Whether the study went to full screen at least once (a browser may refuse it, e.g. a
// phone: then there is nothing to go back to, and the study goes on as it is).
const fullScreen = { entered: false };

async function enterFullScreen() {
  if (!document.documentElement.requestFullscreen) return;
  try {
    await document.documentElement.requestFullscreen();
    fullScreen.entered = true;
  } catch (e) {
    // Refused (no user gesture, or not allowed here): the study goes on in the window.
  }
}

/** Before a trial: whoever left full screen is asked back first (a click must do it). */
async function fullScreenKept() {
  if (!settings.device.fullscreen || !fullScreen.entered || document.fullscreenElement) return;
  show("fullscreen");
  await new Promise((resolve) => {
    $('[data-action="fullscreen"]').addEventListener("click", () => {
      enterFullScreen().then(resolve);
    }, { once: true });
  });
  show("trial");
}

// --- Device check -----------------------------------------------------------------------

/** Wait until the window is as large as the study needs (shows how, meanwhile). */
async function windowLargeEnough(device) {
  const bigEnough = () => innerWidth >= device.min_width && innerHeight >= device.min_height;
  if (bigEnough()) return;
  for (const box of $$("[data-min-size]")) box.textContent = `${device.min_width} × ${device.min_height}`;
  const showSize = () => { $("[data-size]").textContent = `${innerWidth} × ${innerHeight}`; };
  showSize();
  show("small");
  await new Promise((resolve) => {
    const onResize = () => {
      showSize();
      if (bigEnough()) {
        removeEventListener("resize", onResize);
        resolve();
      }
    };
    addEventListener("resize", onResize);
  });
}

/** The window size and the refresh rate; resolves with the frame interval in ms. */
async function checkDevice(device) {
  await windowLargeEnough(device);
  show("device");
  const frameMs = await measureFrameInterval(60);
  const hz = Math.round(1000 / frameMs);
  $("[data-device-status]").textContent = `Your screen refreshes about ${hz} times a second. All set.`;
  const button = $('[data-screen="device"] [data-action="continue"]');
  button.disabled = false;
  if (device.fullscreen) $("[data-fullscreen-note]").hidden = false;
  await continueFrom("device");
  button.disabled = true;
  if (device.fullscreen) await enterFullScreen();
  return frameMs;
}

// --- Completion -------------------------------------------------------------------------

async function finish(run) {
  if (leave.stopped) return;
  // Past the last answer there is nothing left to stop.
  $('[data-action="stop"]').hidden = true;
  $("[data-stop-confirm]").hidden = true;
  show("saving");
  await run.outbox.drained();
  const completion = run.session.completion
    || await withRetries(() => requestJson("POST", "/api/v1/session/complete", { token: run.token }));
  $("[data-code]").textContent = completion.completion_code;
  show("done");
  if (completion.mturk_submit) {
    const form = $("[data-mturk-form]");
    form.action = completion.mturk_submit.action;
    $("[data-mturk-assignment]").value = completion.mturk_submit.assignmentId;
    form.hidden = false;
    $("[data-done-next]").textContent = "Sending you back to MTurk…";
    setTimeout(() => form.submit(), 1500);
  } else if (completion.redirect_url) {
    const link = document.createElement("a");
    link.href = completion.redirect_url;
    link.textContent = "Continue";
    $("[data-done-next]").replaceChildren("Taking you back in a moment. ", link);
    setTimeout(() => location.assign(completion.redirect_url), 1500);
  } else {
    $("[data-done-next]").textContent = "Please copy this code; you may now close this page.";
  }
}

// --- The whole session ------------------------------------------------------------------

async function loadSession(token) {
  try {
    return await withRetries(() => requestJson("GET", "/api/v1/session", { token }));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

async function main() {
  document.body.dataset.background = settings.display.background;
  labelKeys();
  fillReturnText();
  const who = identity();
  if (who === null) return show("invalid");
  if (who.preview) return show("preview");

  let saved = store.get("session");
  if (saved && saved.who !== who.key) {
    // Someone else's session in this browser: start afresh, keep nothing of theirs.
    store.remove("session");
    store.remove("outbox");
    saved = null;
  }
  let session = saved ? await loadSession(saved.token) : null;
  let token = session ? saved.token : null;
  let frameMs = null;
  if (!session) {
    // A newcomer: told before consent when they cannot take part, and the place is
    // taken only once they agreed and their device passed the check.
    store.remove("outbox");
    if (!(await eligible(who))) return;
    await windowLargeEnough(settings.device);
    if (!(await askConsent())) return show("declined");
    offerStop();
    frameMs = await checkDevice(settings.device);
    if (leave.stopped) return;
    show("loading");
    token = await signUp(who);
    if (!token) return;
    leave.token = token;
    session = await loadSession(token);
  }
  if (session.state === "returned") return show("returned-before");
  if (session.state !== "completed") offerStop();
  leave.token = token;

  const net = $("[data-net]");
  const run = {
    token,
    session,
    timing: session.study.timing,
    // Staircase studies: the exposure of the next main trial, as the server last said.
    staircaseMs: session.next_exposure_ms,
    images: new Images(),
    done: new Set(session.trials.filter((t) => t.answered).map((t) => t.id)),
    frameMs: frameMs || 1000 / 60,
    lastAck: Promise.resolve(),
  };
  run.outbox = new Outbox(store.key("outbox"), token, {
    onAck: (trialId, reply) => {
      if (reply?.next_exposure_ms) run.staircaseMs = reply.next_exposure_ms;
      net.hidden = true;
    },
    onChange: (waiting, failing = false) => {
      if (failing) net.hidden = false;
      const count = $("[data-saving-count]");
      count.textContent = waiting ? `${waiting} answer(s) still to send.` : "";
    },
  });
  leave.outbox = run.outbox;
  for (const id of run.outbox.pending()) run.done.add(id);
  run.outbox.flush();
  if (session.state === "completed") return finish(run);

  const remaining = (block) => session.trials.filter((t) => t.block === block && !run.done.has(t.id));
  const examples = session.trials.filter((t) => t.block === "practice").slice(0, 3);
  run.images.preload(remaining("practice").concat(remaining("main")), 20);
  if (session.state === "consented" && !run.done.size) {
    $("[data-examples-box]").hidden = !examples.length;
    $("[data-examples]").replaceChildren(...examples.map((t) => {
      const img = document.createElement("img");
      img.src = t.image;
      img.alt = "An example image";
      return img;
    }));
    await continueFrom("instructions");
  }
  if (frameMs === null) run.frameMs = await checkDevice(session.study.device);
  const mainStarted = session.state === "main" || session.trials.some(
    (t) => t.block === "main" && run.done.has(t.id));
  if (!mainStarted) await runBlock("practice", remaining("practice"), run);
  await runBlock("main", remaining("main"), run);
  await runRepeats(run);
  await finish(run);
}

/** The repeats the server added at the end of the main block for invalid answers: once
 * every answer is acknowledged, read the session again and run the main trials still
 * unanswered, until none is left (the server caps the repeats per image). */
async function runRepeats(run) {
  while (!leave.stopped) {
    await run.outbox.drained();
    if (leave.stopped) return;
    const session = await loadSession(run.token);
    if (!session) return;
    run.session = session;
    if (session.next_exposure_ms) run.staircaseMs = session.next_exposure_ms;
    const left = session.trials.filter((t) => t.block === "main" && !t.answered && !run.done.has(t.id));
    if (!left.length) return;
    await runBlock("main", left, run);
  }
}

main().catch((e) => {
  console.error(e);
  $("[data-invalid-reason]").textContent =
    "Something went wrong. Please reload this page; your answers so far are kept.";
  show("invalid");
});
