// The browser sign-in and console, driven in Debian's Chromium (headless) by playwright-core:
// each user signs in at the real provider's login page, runs the same query in the console,
// tries another tenant's dataset, downloads CSV (the rows fetched), pages, sorts and filters a
// 16,384-row result, completes a name, reloads (history), looks at it dark and at a phone's
// width, signs out. Screenshots go to <artifacts>.
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
    // CSV of the rows already fetched: the query does not run again.
    let sqlRequests = 0;
    page.on('request', (request) => { if (new URL(request.url()).pathname === '/v1/sql') sqlRequests++; });
    await runQuery(page, 'SELECT order_id, tenant FROM my_orders ORDER BY order_id');
    const before = sqlRequests;
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#csv')]);
    const stream = await download.createReadStream();
    let csv = '';
    for await (const chunk of stream) csv += chunk;
    result.csv = csv;
    result.csv_requests = sqlRequests - before;
    // Past 5,000 rows: pages of 500, sorted by a column, filtered by text (16,384 rows: seven
    // copies of the caller's four orders, crossed).
    const big = 'SELECT a.order_id AS a, b.order_id AS b, c.order_id AS c, d.order_id AS d, e.order_id AS e, f.order_id AS f, g.order_id AS g '
      + 'FROM my_orders a, my_orders b, my_orders c, my_orders d, my_orders e, my_orders f, my_orders g';
    result.big = await runQuery(page, big);
    const range = () => page.evaluate(() => document.getElementById('range').textContent);
    result.big_range = await range();
    await page.click('#next');
    await page.click('#next');
    result.big_page3 = { range: await range(), rows: await page.evaluate(() => document.querySelectorAll('#tbody tr').length) };
    await page.click('#thead th:nth-child(7) button');
    await page.click('#thead th:nth-child(7) button');
    result.big_sorted = await page.evaluate(() => ({
      sort: document.querySelector('#thead th:nth-child(7)').getAttribute('aria-sort'),
      first: [...document.querySelectorAll('#tbody tr')].slice(0, 3).map((tr) => tr.children[6].textContent),
      range: document.getElementById('range').textContent,
    }));
    const ownIds = result.own.rows.map((row) => row[0]);
    await page.fill('#filter', ownIds[0]);
    result.big_filtered = await range();
    await page.fill('#filter', '');
    // Completion and colour: a dataset name completed with Tab, keywords and names coloured.
    await page.fill('#editor', 'SELECT order_id FROM my_ord');
    await page.focus('#editor');
    await page.keyboard.press('End');
    await page.keyboard.type('e');
    result.suggested = await page.evaluate(() => [...document.querySelectorAll('#suggest li')].map((li) => li.textContent));
    await page.keyboard.press('Tab');
    result.completed = await page.inputValue('#editor');
    result.coloured = await page.evaluate(() => ({
      kw: [...document.querySelectorAll('#highlight .kw')].map((s) => s.textContent),
      ds: [...document.querySelectorAll('#highlight .ds')].map((s) => s.textContent),
      col: [...document.querySelectorAll('#highlight .col')].map((s) => s.textContent),
    }));
    // History: a reload keeps the draft and the queries run.
    await page.reload();
    await page.waitForFunction(() => document.querySelector('#who .principal') && document.querySelectorAll('#history li').length);
    result.after_reload = await page.evaluate(() => ({
      editor: document.getElementById('editor').value,
      history: [...document.querySelectorAll('#history li')].map((li) => li.textContent),
    }));
    // Dark mode and a phone's width: nothing wider than the screen.
    await runQuery(page, 'SELECT order_id, tenant, customer_id, amount FROM my_orders ORDER BY order_id');
    const looks = async (name) => {
      await page.screenshot({ path: join(artifacts, `console-${user}-${name}.png`) });
      return page.evaluate(() => ({
        background: getComputedStyle(document.body).backgroundColor,
        width: window.innerWidth,
        scroll_width: document.documentElement.scrollWidth,
      }));
    };
    await page.emulateMedia({ colorScheme: 'dark' });
    result.dark = await looks('dark');
    await page.setViewportSize({ width: 360, height: 740 });
    result.narrow_dark = await looks('narrow-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    result.narrow = await looks('narrow');
    await page.setViewportSize({ width: 1280, height: 760 });
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
