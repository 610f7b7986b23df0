// The conversation as the page shows it: one list item per user line and per reply (the
// reply's text and its latency figures), and the live partial transcript. The document
// and the elements are injected, so node tests drive it with a few fake nodes.
//
// Everything shown here is untrusted text (what the user said, what the model wrote): it
// goes in with `textContent` only, never as markup.

export class TranscriptView {
  /** `document` makes the elements; `list` is the <ol> of lines; `partial` the live line. */
  constructor({ document, list, partial }) {
    this.document = document;
    this.list = list;
    this.partialEl = partial;
    this.lines = new Map(); // turn_id → {user, reply, text, figures} (elements)
    this.calls = new Map(); // call_id → its line
  }

  _lines(id) {
    if (!this.lines.has(id)) this.lines.set(id, { user: null, reply: null, text: null, figures: null });
    return this.lines.get(id);
  }

  /** The live transcript of what is being said. */
  partial(text) {
    this.partialEl.textContent = text;
  }

  /** The user's line of turn `id`, made or replaced. */
  userLine(id, text) {
    const lines = this._lines(id);
    if (!lines.user) {
      lines.user = this.document.createElement("li");
      lines.user.className = "user";
      // the user's line goes before the reply's if the reply came first (it cannot, but a
      // refined transcript arrives late)
      if (lines.reply) this.list.insertBefore(lines.user, lines.reply);
      else this.list.append(lines.user);
    }
    lines.user.textContent = text;
  }

  /** The reply's line of turn `id` (made on first use); returns the element of its text. */
  replyLine(id) {
    const lines = this._lines(id);
    if (!lines.reply) {
      lines.reply = this.document.createElement("li");
      lines.reply.className = "assistant";
      lines.text = this.document.createElement("span");
      lines.figures = this.document.createElement("small"); // this turn's latency figures
      lines.figures.className = "figures";
      lines.reply.append(lines.text, lines.figures);
      this.list.append(lines.reply);
    }
    return lines.text;
  }

  /** The reply of turn `id` so far (or in full). */
  reply(id, text) {
    this.replyLine(id).textContent = text;
  }

  /**
   * A tool call of turn `id`: one line, before the turn's reply (what the reply says comes
   * from it), naming the tool, its arguments and who runs it; its result joins it.
   */
  toolCall(id, callId, name, args, runsOn) {
    const line = this.document.createElement("li");
    line.className = `tool ${runsOn}`;
    line.textContent = `${name}(${clip(args)})`;
    const lines = this._lines(id);
    if (lines.reply) this.list.insertBefore(line, lines.reply);
    else this.list.append(line);
    this.calls.set(callId, { line, text: line.textContent });
  }

  /** The result of call `callId` (status output, failed or cancelled). */
  toolResult(callId, status, output) {
    const call = this.calls.get(callId);
    if (!call) return;
    call.line.textContent = `${call.text} → ${status === "output" ? clip(output) : status}`;
    if (status !== "output") call.line.classList.add("failed");
  }

  /** Mark the reply of turn `id` as cancelled (the style strikes it through). */
  cancelled(id) {
    this.replyLine(id);
    this.lines.get(id).reply.classList.add("cancelled");
  }

  /** The latency figures under the reply of turn `id`, if it has a reply line. */
  figures(id, text) {
    const lines = this.lines.get(id);
    if (lines && lines.figures) lines.figures.textContent = text;
  }

  /** An empty conversation. */
  clear() {
    this.lines.clear();
    this.calls.clear();
    this.list.replaceChildren();
    this.partialEl.textContent = "";
  }
}

/** At most 200 characters of an argument list or an output. */
function clip(text) {
  const value = text ?? "";
  return value.length > 200 ? `${value.slice(0, 199)}…` : value;
}
