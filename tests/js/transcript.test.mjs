// The transcript: one line per user turn and per reply, untrusted text as text only
// (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { TranscriptView } from "../../deployments/api/static/transcript.js";
import { FakeElement, fakeDocument } from "./fake-dom.mjs";

function view() {
  const list = new FakeElement("ol");
  const partial = new FakeElement("span");
  return { list, partial, view: new TranscriptView({ document: fakeDocument, list, partial }) };
}

test("a turn shows the user's line, then the reply with its figures", () => {
  const { list, view: v } = view();
  v.userLine("t1", "Hello?");
  v.reply("t1", "Hi");
  v.reply("t1", "Hi there.");
  v.figures("t1", "first token 80 ms");
  const [user, reply] = list.children;
  assert.equal(user.className, "user");
  assert.equal(user.textContent, "Hello?");
  assert.equal(reply.className, "assistant");
  assert.equal(reply.children[0].textContent, "Hi there.");
  assert.equal(reply.children[1].className, "figures");
  assert.equal(reply.children[1].textContent, "first token 80 ms");
  assert.equal(list.children.length, 2);
});

test("a user line that comes after its reply goes before it; a second one replaces it", () => {
  const { list, view: v } = view();
  v.replyLine("t1");
  v.userLine("t1", "draft");
  v.userLine("t1", "refined");
  assert.deepEqual(list.children.map((c) => c.className), ["user", "assistant"]);
  assert.equal(list.children[0].textContent, "refined");
});

test("markup in untrusted text stays text", () => {
  const { list, partial, view: v } = view();
  const markup = '<img src=x onerror="alert(1)"><b>bold</b>';
  v.partial(markup); // FakeElement throws if innerHTML is ever set
  v.userLine("t1", markup);
  v.reply("t1", markup);
  assert.equal(partial.textContent, markup);
  assert.equal(list.children[0].textContent, markup);
  assert.equal(list.children[0].children.length, 0); // no element was made from it
  assert.equal(list.children[1].children[0].textContent, markup);
});

test("a cancelled reply is marked; figures without a reply line go nowhere", () => {
  const { list, view: v } = view();
  v.figures("t0", "STT 10 ms"); // no line yet: nothing made
  assert.equal(list.children.length, 0);
  v.cancelled("t1");
  assert.ok(list.children[0].classList.contains("cancelled"));
});

test("clear empties the list, the partial line and what it knew of the turns", () => {
  const { list, partial, view: v } = view();
  v.partial("…");
  v.userLine("t1", "a");
  v.clear();
  assert.equal(list.children.length, 0);
  assert.equal(partial.textContent, "");
  v.userLine("t1", "b"); // a new line, not the old element
  assert.equal(list.children.length, 1);
});

test("a tool call shows before the reply it feeds, with its result joined", () => {
  const { list, view: v } = view();
  v.userLine("t1", "Weather?");
  v.replyLine("t1");
  v.toolCall("t1", "c1", "get_weather", '{"city":"Oslo"}', "server");
  v.toolResult("c1", "output", "<b>grey</b>");
  v.toolCall("t1", "c2", "slow", "{}", "client");
  v.toolResult("c2", "cancelled");
  v.toolResult("unknown", "output", "ignored");
  assert.deepEqual(list.children.map((c) => c.className),
                   ["user", "tool server", "tool client", "assistant"]);
  assert.equal(list.children[1].textContent, 'get_weather({"city":"Oslo"}) → <b>grey</b>');
  assert.equal(list.children[2].textContent, "slow({}) → cancelled");
  assert.ok(list.children[2].classList.contains("failed"));
});
