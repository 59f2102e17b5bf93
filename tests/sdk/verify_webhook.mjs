// tests/sdk/verify_webhook.mjs — verify webhooks coretuned sent, with OpenAI's own client library
// (client.webhooks.unwrap: Standard Webhooks signature and timestamp checks). Reads one JSON object per
// line on stdin, {"body": "<raw body>", "headers": {...}}; the secret comes from CT_WEBHOOK_SECRET. Prints
// one line per webhook: {"ok": true, "id", "type", "data"} or {"ok": false, "error"}.
import OpenAI from 'openai';
import { createInterface } from 'node:readline';

const client = new OpenAI({ apiKey: 'unused', webhookSecret: process.env.CT_WEBHOOK_SECRET });
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { body, headers } = JSON.parse(line);
  try {
    const ev = await client.webhooks.unwrap(body, headers);
    console.log(JSON.stringify({ ok: true, id: ev.id, type: ev.type, data: ev.data }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, error: String(e && e.message || e) }));
  }
}
