// Drives tests/browser/page.html in Debian's Chromium through playwright-core:
//   node drive.mjs PAGE_URL USER_DATA_DIR
// Prints one JSON line {"errors":[…],"console":[…]} and exits 0, or exits 1.
import { chromium } from "playwright-core";

const [pageUrl, userDataDir] = process.argv.slice(2);
const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.SLUICE_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args,
  timeout: 60000,
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(m.text()));
  page.on("pageerror", (e) => consoleLines.push("pageerror: " + e.message));
  await page.goto(pageUrl);
  await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 30000 });
  const result = await page.evaluate(() => window.__result);
  // Leaving the page: an event still queued goes out with navigator.sendBeacon.
  await page.evaluate(() => (Tell.tell || Tell.default).track("Beacon Sent", { via: "beacon" }));
  await page.goto("about:blank");
  await page.waitForTimeout(1000);
  console.log(JSON.stringify({ ...result, console: consoleLines }));
} finally {
  await context.close();
}
