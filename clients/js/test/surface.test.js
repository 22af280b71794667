// The public surface of roomsvc.js is what roomsvc.d.ts declares (docs/clients.md): every value
// it declares is exported, nothing else is, and every member of RoomsvcClient exists. The
// client is split into modules (client.js lists them); this keeps the entry point whole.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as roomsvc from "../roomsvc.js";

const DTS = readFileSync(new URL("../roomsvc.d.ts", import.meta.url), "utf8");

function declaredMembers(className) {
  const body = DTS.split(`export class ${className} `)[1].split("\n}\n")[0];
  const names = [...body.matchAll(/^ {2}(?:readonly )?(\w+)(\??)[<(:]/gm)];
  return names.filter(([, name, optional]) => name !== "constructor" && !optional).map(([, name]) => name);
}

test("roomsvc.js exports exactly the values roomsvc.d.ts declares", () => {
  const declared = [...DTS.matchAll(/^export (?:const|function|class) (\w+)/gm)].map((m) => m[1]);
  assert.deepEqual(Object.keys(roomsvc).sort(), [...new Set(declared)].sort());
});

test("every declared member of RoomsvcClient and RoomsvcError exists", () => {
  const client = new roomsvc.RoomsvcClient({ url: "http://127.0.0.1:1", token: "t", WebSocket: class {} });
  const clientMembers = declaredMembers("RoomsvcClient");
  assert.ok(clientMembers.length > 20, clientMembers.join(","));
  for (const name of clientMembers) assert.ok(name in client, `RoomsvcClient.${name}`);
  const error = new roomsvc.RoomsvcError("x", { reason: "closed" });
  for (const name of declaredMembers("RoomsvcError")) assert.ok(name in error, `RoomsvcError.${name}`);
});
