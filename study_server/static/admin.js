// Admin pages: copy buttons, and a reload every N seconds (<meta name="percept-refresh">)
// that keeps the scroll position and open <details>. Served from /static because the
// Content-Security-Policy allows no inline script.
"use strict";

const SCROLL_KEY = "percept-admin-scroll:" + location.pathname;
const OPEN_KEY = "percept-admin-open:" + location.pathname;

function restore() {
  const open = JSON.parse(sessionStorage.getItem(OPEN_KEY) || "[]");
  for (const id of open) {
    const details = document.getElementById(id);
    if (details) details.open = true;
  }
  const y = sessionStorage.getItem(SCROLL_KEY);
  if (y !== null) window.scrollTo(0, Number(y));
  sessionStorage.removeItem(SCROLL_KEY);
  sessionStorage.removeItem(OPEN_KEY);
}

// A reload would lose what the admin is typing or choosing: wait while a form is in use.
function busy() {
  const active = document.activeElement;
  if (active && active.matches("input:not([readonly]), select, textarea:not([readonly])")) {
    return true;
  }
  return [...document.querySelectorAll("form input:not([type=hidden]), form select")].some(
    (field) => (field.tagName === "SELECT" ? changedChoice(field) : field.value !== field.defaultValue),
  );
}

function changedChoice(select) {
  const initial = [...select.options].findIndex((option) => option.defaultSelected);
  return select.selectedIndex !== Math.max(initial, 0);
}

function reload() {
  if (document.hidden || busy()) {
    setTimeout(reload, 5000);
    return;
  }
  sessionStorage.setItem(SCROLL_KEY, String(window.scrollY));
  const open = [...document.querySelectorAll("details[open][id]")].map((d) => d.id);
  sessionStorage.setItem(OPEN_KEY, JSON.stringify(open));
  location.reload();
}

async function copy(button) {
  const field = document.getElementById(button.dataset.copy);
  const status = button.closest("section").querySelector(".admin-copied");
  try {
    // The Clipboard API needs a secure context (https or localhost).
    await navigator.clipboard.writeText(field.value);
  } catch {
    field.select();
    document.execCommand("copy");
  }
  if (status) status.textContent = "Copied.";
}

document.addEventListener("DOMContentLoaded", () => {
  restore();
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", () => copy(button));
  }
  const meta = document.querySelector('meta[name="percept-refresh"]');
  const seconds = meta ? Number(meta.content) : 0;
  if (seconds > 0) setTimeout(reload, seconds * 1000);
});
