// Drives durin's collaborative editor demo (/_client/editor.html) in
// headless Chromium: two pages open one doc, each types into its
// CodeMirror editor, both end up showing the same text with the other's
// presence, and a screenshot of each page is kept.
//
//   node tests/browser/editor.mjs --url http://127.0.0.1:PORT --shots DIR
//
// Progress and failures go to stderr; exit code 0 means every check passed.

import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const CHROMIUM_PATH = "/usr/bin/chromium";
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
const STEP_TIMEOUT_MS = 10_000;

let step = "starting";
const log = (message) => console.error(`editor.mjs: ${message}`);
function fail(message) {
  throw new Error(`${message} (step: ${step})`);
}

const { values: options } = parseArgs({
  options: {
    url: { type: "string" },
    shots: { type: "string" },
    doc: { type: "string", default: `editor-${process.pid}-${Date.now()}` },
  },
});
if (!options.url || !options.shots) {
  console.error("usage: node editor.mjs --url http://127.0.0.1:PORT --shots DIR");
  process.exit(2);
}

async function openEditor(context, name) {
  const page = await context.newPage();
  page.on("pageerror", (error) => log(`[${name} page error] ${error.message}`));
  page.on("console", (m) => m.type() === "error" && log(`[${name} console] ${m.text()}`));
  const query = new URLSearchParams({ doc: options.doc, name });
  const response = await page.goto(`${options.url}/_client/editor.html?${query}`, {
    timeout: STEP_TIMEOUT_MS,
  });
  if (!response?.ok()) fail(`GET editor.html as ${name} answered ${response?.status()}`);
  await page.waitForSelector('#status[data-state="connected"]', { timeout: STEP_TIMEOUT_MS });
  await page.waitForSelector('body[data-synced="true"]', { timeout: STEP_TIMEOUT_MS });
  return page;
}

async function type(page, text) {
  await page.click(".cm-content", { timeout: STEP_TIMEOUT_MS });
  await page.keyboard.press("Control+End");
  await page.keyboard.type(text, { delay: 15 });
}

const editorText = (page) => page.evaluate(() => window.ytext.toString());

async function run(context) {
  step = "open both pages";
  const alice = await openEditor(context, "alice");
  const bob = await openEditor(context, "bob");

  step = "presence";
  for (const page of [alice, bob]) {
    await page.waitForSelector('#users[data-count="2"]', { timeout: STEP_TIMEOUT_MS });
  }

  step = "type in both";
  await type(alice, "Hello from alice. ");
  await type(bob, "And bob was here.");
  await type(alice, " Bye!");

  step = "both show the same text";
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let a, b;
  for (;;) {
    [a, b] = [await editorText(alice), await editorText(bob)];
    // What each editor shows (its own document, not the Y.Text under it).
    const shownA = await alice.evaluate(() => window.editorView.state.doc.toString());
    const shownB = await bob.evaluate(() => window.editorView.state.doc.toString());
    const complete = ["Hello from alice.", "And bob was here.", "Bye!"].every((s) => a.includes(s));
    if (a === b && shownA === a && shownB === b && complete) break;
    if (Date.now() > deadline) fail(`the pages differ: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  step = "the other's cursor is shown";
  await alice.waitForSelector(".cm-ySelectionCaret", { timeout: STEP_TIMEOUT_MS });

  step = "the server has it";
  const res = await fetch(`${options.url}/doc/${options.doc}`);
  if (res.status !== 200) fail(`GET /doc/${options.doc} answered ${res.status}`);

  step = "screenshots";
  mkdirSync(options.shots, { recursive: true });
  await alice.screenshot({ path: join(options.shots, "editor-alice.png") });
  await bob.screenshot({ path: join(options.shots, "editor-bob.png") });
  log(`both pages show ${JSON.stringify(a)}; screenshots in ${options.shots}`);
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
      timeout: 15_000,
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
process.exit(process.exitCode ?? 0);
