// The browser sign-in and console, driven in Debian's Chromium (headless) by playwright-core:
// each user signs in at the real provider's login page, runs the same query in the console,
// tries another tenant's dataset, downloads CSV, signs out. Screenshots go to <artifacts>.
//
//   node console.mjs <gateway-origin> <artifacts-dir> <user>...
//
// stdout: one JSON object, per user what the page showed; the Rust test asserts on it
// (gateway/tests/integration/browser.rs). Exit 1 with the error on stderr if a step fails.
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(join(process.cwd(), 'gateway/tests/js/package.json'));
const { chromium } = require('playwright-core');

const [origin, artifacts, ...users] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run'],
});
const results = {};
const STEP = 20_000;

async function runQuery(page, sql) {
  await page.fill('#editor', sql);
  await page.focus('#editor');
  await page.keyboard.press('Control+Enter');
  await page.waitForFunction(() => {
    const s = document.getElementById('status').textContent;
    return /rows? in \d+ ms|Refused|Failed/.test(s);
  }, null, { timeout: STEP });
  return page.evaluate(() => ({
    status: document.getElementById('status').textContent,
    error: document.getElementById('error').hidden ? null : document.getElementById('error').innerText,
    columns: [...document.querySelectorAll('#thead th')].map((th) => th.textContent),
    rows: [...document.querySelectorAll('#tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent)),
  }));
}

try {
  for (const user of users) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 760 }, acceptDownloads: true });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP);
    const result = { user };
    // Not signed in: /console sends the browser to the provider's login page.
    await page.goto(`${origin}/console`);
    await page.waitForSelector('input[name=login]');
    result.login_page = new URL(page.url()).origin;
    await page.fill('input[name=login]', user);
    await page.fill('input[name=password]', 'any-password');
    await page.click('button[type=submit]');
    // The provider's consent page, then back to the console through /auth/callback.
    await page.waitForSelector('button[autofocus], #editor');
    if (!page.url().startsWith(origin)) await page.click('button[type=submit]');
    await page.waitForURL(`${origin}/console`);
    await page.waitForFunction(() => document.querySelector('#who .principal'));
    await page.waitForFunction(() => !/Loading/.test(document.getElementById('datasets-status').textContent));
    result.who = await page.evaluate(() => document.getElementById('who').innerText);
    result.datasets = await page.evaluate(() => [...document.querySelectorAll('#datasets .dataset')].map((b) => b.firstChild.textContent));
    const cookies = await context.cookies();
    result.cookies = cookies.map((c) => ({ name: c.name, secure: c.secure, httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path, domain: c.domain }));
    result.own = await runQuery(page, 'SELECT order_id, tenant, customer_id, amount FROM my_orders ORDER BY order_id');
    await page.screenshot({ path: join(artifacts, `console-${user}.png`) });
    result.other = await runQuery(page, 'SELECT * FROM globex.orders');
    await page.screenshot({ path: join(artifacts, `console-${user}-refused.png`) });
    // Download as CSV: the same query, another Accept.
    await page.fill('#editor', 'SELECT order_id, tenant FROM my_orders ORDER BY order_id');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#csv')]);
    const stream = await download.createReadStream();
    let csv = '';
    for await (const chunk of stream) csv += chunk;
    result.csv = csv;
    // Sign out: the session ends here and at the provider (RP-initiated logout).
    await page.click('#signout');
    await page.waitForURL((url) => !url.pathname.startsWith('/console'));
    // The provider asks to confirm the logout; confirm, then land on the gateway's page.
    if (!page.url().startsWith(origin)) {
      await page.waitForSelector('button[autofocus], button[type=submit]');
      await page.click('button[autofocus], button[type=submit]');
    }
    await page.waitForURL(`${origin}/auth/signed-out`);
    result.signed_out_text = await page.evaluate(() => document.body.innerText);
    const after = await context.request.get(`${origin}/auth/session`, { headers: { Accept: 'application/json' } });
    result.session_after_logout = after.status();
    await page.goto(`${origin}/console`);
    result.console_after_logout = new URL(page.url()).origin;
    results[user] = result;
    await context.close();
  }
} catch (error) {
  console.error(error.stack || String(error));
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log(JSON.stringify(results));
