// The "now playing" box: the sentence sounding now, the chunks played, and how far the
// last turn heard has played. Pure: it reads the player and the conversation and says what
// to show; the page puts it on screen.

export class NowPlaying {
  constructor(conversation) {
    this.conversation = conversation;
    this.lastTurn = null; // the turn heard last: its progress stays shown once it ends
  }

  /** {played, sentence, progress: {value, text} or null} for `player` (player.js). */
  update(player) {
    const current = player.currentSentence();
    const shown = { played: String(player.played), sentence: "nothing", progress: null };
    if (current) {
      this.lastTurn = current.turn;
      const turn = this.conversation.turn(current.turn);
      shown.sentence = turn.sentences.get(current.sentence) ?? `sentence ${current.sentence + 1}`;
    }
    if (this.lastTurn) {
      const turn = this.conversation.turn(this.lastTurn);
      const done = player.playedByTurn.get(this.lastTurn) ?? 0;
      const total = Math.max(turn.expected ?? 0, turn.chunks, 1);
      shown.progress = { value: done / total, text: `${Math.round((100 * done) / total)}%` };
    }
    return shown;
  }
}
