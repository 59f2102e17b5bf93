// tests/browser/signin.test.mjs — the daemon's sign-in link in a real headless browser:
//   node signin.test.mjs BASE_URL        (CT_TOKEN: the admin's token)
// /?token=<admin token> lands signed in (the jobs overview), with the token gone from location.search and
// kept in sessionStorage; /?token=<bad> shows the sign-in form with its error and stores nothing.
import { chromium } from 'playwright-core';

const BASE = process.argv[2];
const TOKEN = process.env.CT_TOKEN;
const CHROMIUM = process.env.CT_CHROMIUM || '/usr/bin/chromium';
if (!BASE || !TOKEN) { console.error('usage: CT_TOKEN=... node signin.test.mjs BASE_URL'); process.exit(2); }
function check(cond, what) { if (!cond) throw new Error(`check failed: ${what}`); console.log('ok', what); }

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${BASE}/?token=${encodeURIComponent(TOKEN)}`);
  await page.waitForSelector('#overview', { timeout: 30_000 });
  check(!(await page.$('#signin')), 'the link signed the tab in (no sign-in form)');
  check(!(await page.evaluate(() => location.search)).includes('token'), 'the token left the address bar');
  check(!(await page.evaluate(() => location.href)).includes(TOKEN), 'and the URL');
  check((await page.evaluate(() => Object.values(sessionStorage))).includes(TOKEN), 'sessionStorage holds it');
  const bad = await (await browser.newContext()).newPage();
  await bad.goto(`${BASE}/?token=ct_not-a-real-token`);
  await bad.waitForSelector('#signin .error:not(:empty)', { timeout: 30_000 });
  check((await bad.textContent('#signin .error')).includes('not accepted'), 'a bad token shows the form with an error');
  check(!(await bad.evaluate(() => location.search)).includes('token'), 'the bad token left the address bar too');
  check((await bad.evaluate(() => sessionStorage.length)) === 0, 'nothing stored for it');
} finally {
  await browser.close();
}
console.log('signin: all checks passed');
