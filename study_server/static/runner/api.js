// The participant API, and the outbox that never loses an answer.
//
// An answer is written to localStorage before it is sent, then sent (one at a time, in
// order) with retries and exponential backoff until the server acknowledges it. The
// server treats the same body again as the same answer, so a retry after a lost reply,
// a reload or a reopened tab delivers every answer exactly once.

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** fetch JSON; network failures and 5xx throw a retryable ApiError (status 0 or 5xx). */
export async function requestJson(method, url, { token = null, body = undefined } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, "network", String(e));
  }
  let data = null;
  try {
    data = await response.json();
  } catch (e) {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, data?.error || "http", data?.message || response.statusText);
  }
  return data;
}

export function retryable(error) {
  return error instanceof ApiError && (error.status === 0 || error.status >= 500 || error.status === 429);
}

/** Call `fn` until it succeeds or fails for a reason retrying cannot fix. */
export async function withRetries(fn, onWait = () => {}) {
  let delay = 500;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (!retryable(e)) throw e;
      onWait(e);
      await sleep(delay);
      delay = Math.min(delay * 2, 8000);
    }
  }
}

export class Outbox {
  /** @param {string} key localStorage key @param {string} token bearer token */
  constructor(key, token, { onAck = () => {}, onChange = () => {} } = {}) {
    this.key = key;
    this.token = token;
    this.onAck = onAck;
    this.onChange = onChange;
    this.items = JSON.parse(localStorage.getItem(key) || "[]");
    this.waiters = new Map();
    this.sending = false;
  }

  save() {
    localStorage.setItem(this.key, JSON.stringify(this.items));
    this.onChange(this.items.length);
  }

  /** Trial ids answered here but not yet acknowledged by the server. */
  pending() {
    return new Set(this.items.map((item) => item.trialId));
  }

  /** Keep the answer, start sending; resolves with the server's reply once acknowledged. */
  add(trialId, body) {
    this.items.push({ trialId, body });
    this.save();
    const acked = new Promise((resolve) => this.waiters.set(trialId, resolve));
    this.flush();
    return acked;
  }

  /** Send queued answers in order until none is left; safe to call any time. */
  async flush() {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.items.length) {
        const { trialId, body } = this.items[0];
        let reply;
        try {
          reply = await withRetries(
            () => requestJson("PUT", `/api/v1/trials/${trialId}/response`, { token: this.token, body }),
            () => this.onChange(this.items.length, true),
          );
        } catch (e) {
          // Not retryable (the server refused this answer for good): keep it out of the
          // way of the others, and say so in the console for whoever debugs.
          console.error("answer refused", trialId, e);
          reply = { error: e.code };
        }
        this.items.shift();
        this.save();
        this.onAck(trialId, reply);
        this.waiters.get(trialId)?.(reply);
        this.waiters.delete(trialId);
      }
    } finally {
      this.sending = false;
    }
  }

  /** Resolves once every queued answer is acknowledged. */
  async drained() {
    while (this.items.length || this.sending) {
      this.flush();
      await sleep(200);
    }
  }
}
