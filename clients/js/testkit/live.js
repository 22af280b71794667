// Shared by the tests against a real server (tests/test_js_client.py starts it and sets
// ROOMSVC_TEST_URL): dev tokens from the demo's endpoint, and waits with a deadline.
import assert from "node:assert/strict";

export const BASE = process.env.ROOMSVC_TEST_URL;
export const skip = !BASE ? "ROOMSVC_TEST_URL is not set (tests/test_js_client.py sets it)" : false;
export const WITHIN_MS = 20000 * Number(process.env.ROOMSVC_TEST_TIME_SCALE ?? 1);

/** A dev token for `playerId` of `applicationId` (served only under the dev secret). */
export async function devToken(applicationId, playerId) {
  const reply = await fetch(`${BASE}/demo/token`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ playerId, name: playerId, applicationId }),
  });
  assert.equal(reply.status, 200, await reply.clone().text());
  return (await reply.json()).token;
}

/** Resolves with the first `event` payload that satisfies `predicate`. */
export function next(client, event, predicate = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${WITHIN_MS} ms`)), WITHIN_MS);
    const off = client.on(event, (payload) => {
      if (!predicate(payload)) return;
      clearTimeout(timer);
      off();
      resolve(payload);
    });
  });
}

/** Resolves once `predicate()` holds, polling every 10 ms. */
export function until(predicate) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + WITHIN_MS;
    const check = () => {
      if (predicate()) resolve();
      else if (Date.now() > deadline) reject(new Error(`not within ${WITHIN_MS} ms: ${predicate}`));
      else setTimeout(check, 10);
    };
    check();
  });
}
