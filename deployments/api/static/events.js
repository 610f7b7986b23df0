// What each server event means to the page: the conversation's state (conversation.js),
// the transcript (transcript.js), the reply audio and the status line. No DOM here: the
// view, the audio and the rest are injected (`ports`), so node tests feed events and
// read what came out. Events replayed from a past session's log are shown and played but
// do not silence the player or report settings as freshly applied (`replaying`).

export class EventHandler {
  /**
   * ports: `view` (TranscriptView), `audio` ({play(turn, data), stop(reason, turn),
   * pause(turn), resume(turn)}),
   * `say(text)` (the status line), `settings(settings)` (the session's settings, from the
   * server), `latency(turnId)` (that turn's figures changed).
   */
  constructor(conversation, { view, audio, say, settings, latency }) {
    this.conversation = conversation;
    this.view = view;
    this.audio = audio;
    this.say = say;
    this.settings = settings;
    this.latency = latency;
    this.replaying = false;
    this.held = null; // the turn whose reply the server paused (response.paused), or null
  }

  handle(event) {
    const conversation = this.conversation;
    const changed = conversation.record(event);
    const data = event.data || {};
    const id = event.turn_id;
    switch (event.type) {
      case "session.created":
      case "session.updated":
        this.settings(data.settings);
        if (event.type === "session.updated" && !this.replaying) {
          this.say(`Settings applied (${(data.changed || []).join(", ")}).`);
        }
        break;
      case "input.speech_started":
        this.view.partial("…");
        // barge-in: the user talks over the reply, so the reply goes quiet at once (unless
        // the server paused it to see whether this is only a backchannel)
        if (!this.replaying && this.held === null) this.audio.stop("speech");
        break;
      case "response.paused":
        this.held = id;
        if (!this.replaying) this.audio.pause(id);
        this.say("Listening… (the reply is paused)");
        break;
      case "response.resumed":
        this.held = null;
        if (!this.replaying) this.audio.resume(id);
        this.view.partial("");
        this.say(data.transcript ? `Heard “${data.transcript}”: going on.` : "Going on.");
        break;
      case "input.audio":
        // a new turn: speech over a paused reply proved an interruption
        if (this.held !== null && !this.replaying) this.audio.stop("interrupted", this.held);
        this.held = null;
        break;
      case "input.speech_stopped":
        this.view.partial("(transcribing)");
        break;
      case "transcript.partial":
        this.view.partial(data.text);
        break;
      case "transcript.final":
      case "transcript.refined":
        this.view.partial("");
        this._userLine(id, data.text);
        break;
      case "input.text":
        this._userLine(id, data.text);
        break;
      case "response.started":
        conversation.turn(id).mode = data.mode;
        this.view.replyLine(id);
        break;
      case "response.text.delta": {
        const turn = conversation.turn(id);
        turn.reply += data.delta;
        this.view.reply(id, turn.reply);
        break;
      }
      case "response.sentence":
        conversation.turn(id).sentences.set(data.index, data.text);
        break;
      case "response.audio.chunk":
        conversation.turn(id).chunks += 1;
        this.audio.play(id, data);
        break;
      case "response.audio.done":
        conversation.turn(id).expected = data.chunk_count;
        break;
      case "narration.ready": {
        const turn = conversation.turn(id);
        turn.expected = data.chunk_count;
        turn.narrated = true;
        break;
      }
      case "response.done": {
        const turn = conversation.turn(id);
        turn.status = data.status;
        turn.reply = data.text || turn.reply;
        this.view.reply(id, turn.reply);
        break;
      }
      case "response.cancelled":
        if (this.held === id) this.held = null;
        conversation.turn(id).status = "cancelled";
        this.view.cancelled(id);
        if (!this.replaying) this.audio.stop(`cancelled:${data.reason}`, id);
        break;
      case "tool.call.started":
        this.view.toolCall(id, data.call_id, data.name, data.arguments, data.runs_on);
        break;
      case "tool.call.output":
        this.view.toolResult(data.call_id, "output", data.output);
        break;
      case "tool.call.failed":
        this.view.toolResult(data.call_id, `failed (${data.code}): ${data.message}`);
        break;
      case "tool.call.cancelled":
        this.view.toolResult(data.call_id, "cancelled");
        break;
      case "error":
        this.say(`Error: ${data.message} (${data.code})`);
        break;
      case "session.closed":
        this.say("The session is closed.");
        break;
      case "session.resync_required":
        this.say("Events were trimmed from the log: open the session again.");
        break;
      default:
        break;
    }
    if (changed) this.latency(changed);
  }

  _userLine(id, text) {
    this.conversation.turn(id).user = text;
    this.view.userLine(id, text);
  }
}
