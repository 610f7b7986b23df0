// What each server event means to the page: the conversation's state (conversation.js),
// the transcript (transcript.js), the reply audio and the status line. No DOM here: the
// view, the audio and the rest are injected (`ports`), so node tests feed events and
// read what came out. Events replayed from a past session's log are shown and played but
// do not silence the player or report settings as freshly applied (`replaying`).

export class EventHandler {
  /**
   * ports: `view` (TranscriptView), `audio` ({play(turn, data), stop(reason, turn)}),
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
        // barge-in: the user talks over the reply, so the reply goes quiet at once
        if (!this.replaying) this.audio.stop("speech");
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
        conversation.turn(id).status = "cancelled";
        this.view.cancelled(id);
        if (!this.replaying) this.audio.stop(`cancelled:${data.reason}`, id);
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
