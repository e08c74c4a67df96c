// Drives durin's chat demo (/_client/chat.html) in headless Chromium: two
// users in one room see each other, the server restarts under them, both
// pages reconnect by themselves and chat again.
//
//   node tests/browser/chat.mjs --url http://127.0.0.1:PORT [--room NAME]
//
// The restart is done by whoever runs this script: it prints the line
// RESTART on stdout, waits for the line RESTARTED on stdin, then checks the
// reconnect. Progress and failures go to stderr, so stdout carries nothing
// but that one line. Exit code 0 means every check passed; every step has a
// deadline, and the whole run has one too.

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

const CHROMIUM_PATH = "/usr/bin/chromium";
// The machine's network is closed: without these flags Chromium keeps
// trying to reach its own services and stalls on the refused connections.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const RUN_TIMEOUT_MS = 55_000;
const LAUNCH_TIMEOUT_MS = 15_000;
const STEP_TIMEOUT_MS = 10_000;
// The restart itself (kill, spawn, wait for the ready line) happens outside.
const RESTARTED_TIMEOUT_MS = 25_000;
// Backoff with full jitter: after a restart of a few seconds the pages are
// at most a few attempts in, each waiting at most 0.25, 0.5, 1, 2, 4 s.
const RECONNECT_TIMEOUT_MS = 15_000;

let step = "starting";
const log = (message) => console.error(`chat.mjs: ${message}`);

function fail(message) {
  throw new Error(`${message} (step: ${step})`);
}

const { values: options } = parseArgs({
  options: {
    url: { type: "string" },
    room: { type: "string", default: `browser-${process.pid}-${Date.now()}` },
  },
});
if (!options.url) {
  console.error("usage: node chat.mjs --url http://127.0.0.1:PORT [--room NAME]");
  process.exit(2);
}

/** Resolves with the next stdin line, or fails on EOF or timeout. */
function nextStdinLine(timeoutMs) {
  const lines = createInterface({ input: process.stdin });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      lines.close();
      reject(new Error(`no line on stdin within ${timeoutMs} ms`));
    }, timeoutMs);
    lines.once("line", (line) => {
      clearTimeout(timer);
      // Settled first: closing emits "close", whose reject is then a no-op.
      resolve(line.trim());
      lines.close();
    });
    lines.once("close", () => reject(new Error("stdin closed before a line came")));
  });
}

/** Opens the chat page as `name`; the page's console errors go to stderr. */
async function openChat(context, name) {
  const page = await context.newPage();
  page.on("console", (message) => {
    // Refused connections while the server restarts are expected; the
    // status checks say when reconnecting takes too long.
    if (message.type() !== "error" || message.text().includes("ERR_CONNECTION_REFUSED")) return;
    log(`[${name} console] ${message.text()}`);
  });
  page.on("pageerror", (error) => log(`[${name} page error] ${error.message}`));
  const query = new URLSearchParams({ room: options.room, name });
  const response = await page.goto(`${options.url}/_client/chat.html?${query}`, {
    timeout: STEP_TIMEOUT_MS,
  });
  if (!response?.ok()) fail(`GET chat.html as ${name} answered ${response?.status()}`);
  return page;
}

async function waitConnected(page, name, timeoutMs = STEP_TIMEOUT_MS) {
  try {
    await page.waitForSelector('#status[data-state="connected"]', { timeout: timeoutMs });
  } catch {
    const status = await page.locator("#status").textContent();
    fail(`${name}'s page is not connected after ${timeoutMs} ms; #status says ${JSON.stringify(status)}`);
  }
}

/** Waits until some line of `#messages` contains `text`. */
async function waitForLine(page, name, text) {
  const lines = page.locator("#messages li", { hasText: text });
  try {
    await lines.first().waitFor({ timeout: STEP_TIMEOUT_MS });
  } catch {
    const shown = await page.locator("#messages").innerText();
    fail(`${name}'s page never showed ${JSON.stringify(text)}; it shows:\n${shown}`);
  }
}

async function say(page, text) {
  await page.fill("#input", text, { timeout: STEP_TIMEOUT_MS });
  await page.click("#send", { timeout: STEP_TIMEOUT_MS });
}

/** Records every state `#status` passes through from now on. */
async function recordStatus(page) {
  await page.evaluate(() => {
    const status = document.getElementById("status");
    window.statusHistory = [status.dataset.state];
    new MutationObserver(() => window.statusHistory.push(status.dataset.state)).observe(status, {
      attributes: true,
      attributeFilter: ["data-state"],
    });
  });
}

async function run(context) {
  step = "open both pages";
  const alice = await openChat(context, "alice");
  await waitConnected(alice, "alice");
  const bob = await openChat(context, "bob");
  await waitConnected(bob, "bob");

  step = "join messages";
  await waitForLine(alice, "alice", "bob joined");
  await waitForLine(bob, "bob", "bob joined");

  step = "message before the restart";
  await say(alice, "hello before restart");
  await waitForLine(bob, "bob", "alice: hello before restart");
  await waitForLine(alice, "alice", "alice: hello before restart");

  step = "restart";
  await recordStatus(alice);
  await recordStatus(bob);
  console.log("RESTART");
  const answer = await nextStdinLine(RESTARTED_TIMEOUT_MS);
  if (answer !== "RESTARTED") fail(`expected RESTARTED on stdin, got ${JSON.stringify(answer)}`);

  step = "reconnect after the restart";
  for (const [page, name] of [[alice, "alice"], [bob, "bob"]]) {
    await waitConnected(page, name, RECONNECT_TIMEOUT_MS);
    const history = await page.evaluate(() => window.statusHistory);
    if (!history.includes("reconnecting")) {
      fail(`${name}'s page never showed reconnecting; its states: ${history.join(", ")}`);
    }
  }

  step = "messages after the restart";
  await say(bob, "hello after restart");
  await waitForLine(alice, "alice", "bob: hello after restart");
  await say(alice, "welcome back");
  await waitForLine(bob, "bob", "alice: welcome back");
}

async function main() {
  const userDataDir = mkdtempSync(join(tmpdir(), "durin-chromium-"));
  let context;
  const deadline = setTimeout(() => {
    log(`FAILED: the whole run took more than ${RUN_TIMEOUT_MS} ms (step: ${step})`);
    process.exit(1);
  }, RUN_TIMEOUT_MS);
  try {
    step = "launch chromium";
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: LAUNCH_TIMEOUT_MS,
    });
    await run(context);
    log("passed");
  } catch (error) {
    log(`FAILED: ${error.message}`);
    process.exitCode = 1;
  } finally {
    step = "close chromium";
    await context?.close().catch((error) => log(`closing chromium: ${error.message}`));
    rmSync(userDataDir, { recursive: true, force: true });
    clearTimeout(deadline);
  }
}

await main();
// Nothing may keep the process alive past its verdict (stdin, a socket).
process.exit(process.exitCode ?? 0);
