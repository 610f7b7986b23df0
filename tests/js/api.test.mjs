// The HTTP API as the page calls it, and its API key field (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { ApiKeyField, apiClient, wantsApiKey } from "../../deployments/api/static/api.js";
import { FakeElement } from "./fake-dom.mjs";

function response(status, body) {
  return {
    ok: status < 400, status,
    json: async () => (typeof body === "string" ? JSON.parse(body) : body),
  };
}

function client(answer, key = "") {
  const requests = [];
  const wanted = [];
  const api = apiClient({
    base: "http://127.0.0.1:8000",
    fetch: async (url, options) => { requests.push({ url, options }); return answer; },
    apiKey: () => key, onKeyWanted: (message) => wanted.push(message),
  });
  return { api, requests, wanted };
}

test("a request is JSON, on the page's origin, with the caller's headers", async () => {
  const { api, requests } = client(response(200, {}));
  await api("/v1/sessions/s1", { method: "GET", headers: { "x-voxline-token": "tok" } });
  assert.deepEqual(requests, [{
    url: "http://127.0.0.1:8000/v1/sessions/s1",
    options: { method: "GET", headers: { "content-type": "application/json", "x-voxline-token": "tok" } },
  }]);
});

test("the API key, when there is one, goes as a bearer token", async () => {
  const { api, requests } = client(response(200, {}), "sk-1");
  await api("/v1/models");
  assert.equal(requests[0].options.headers.authorization, "Bearer sk-1");
});

test("an error throws the API's message; a 401 about the key asks for it", async () => {
  const refusal = { error: { message: "An API key is required.", code: "unauthorized" } };
  const { api, wanted } = client(response(401, refusal));
  await assert.rejects(api("/v1/sessions"), { message: "An API key is required." });
  assert.deepEqual(wanted, ["An API key is required."]);
});

test("an error without a JSON body throws its status; other 401s do not ask for a key", async () => {
  const { api, wanted } = client(response(502, "<html>bad gateway</html>"));
  await assert.rejects(api("/v1/models"), { message: "502" });
  assert.equal(wantsApiKey(401, "The session token is wrong."), false);
  assert.equal(wantsApiKey(403, "API key"), false);
  assert.equal(wantsApiKey(401, "Invalid API key."), true);
  assert.deepEqual(wanted, []);
});

test("the key field: kept for the tab, trimmed, and opened when the server wants a key", () => {
  const stored = new Map();
  const storage = { getItem: (k) => stored.get(k) ?? null, setItem: (k, v) => stored.set(k, v) };
  const said = [];
  const input = new FakeElement("input");
  const box = new FakeElement("details");
  const field = new ApiKeyField({ input, box, storage, say: (t) => said.push(t) });
  field.restore();
  assert.equal(input.value, "");
  input.value = "  sk-2 ";
  field.remember();
  assert.deepEqual([...stored], [["voxline.apiKey", "sk-2"]]);
  input.value = "";
  field.restore();
  assert.equal(field.value(), "sk-2");
  field.ask("An API key is required.");
  assert.ok(box.open && input.focused);
  assert.deepEqual(said, ["An API key is required. Enter the API key under Session, then try again."]);
});
