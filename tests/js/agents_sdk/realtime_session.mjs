// The stock OpenAI Agents SDK for JavaScript (@openai/agents-realtime: RealtimeSession over
// WebSocket, as a Node app uses it) against a Voxline server: a typed turn, a spoken turn
// (PCM16 at 24 kHz from a file, 20 ms at a time in real time), a reply interrupted at its
// first audio, then a new connection that still answers. Prints one JSON line of what the
// SDK showed; tests/api/test_agents_sdk.py runs it and checks it.
//   node realtime_session.mjs ws://127.0.0.1:PORT/v1/realtime?model=voxline speech.pcm
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { RealtimeAgent, RealtimeSession } from '@openai/agents-realtime';

const [url, speechPath] = process.argv.slice(2);
const agent = new RealtimeAgent({ name: 'Assistant', instructions: 'Answer briefly.' });

function within(promise, what, ms = 60000) {
  return Promise.race([promise, sleep(ms).then(() => { throw new Error(`no ${what} in ${ms} ms`); })]);
}

async function open() {
  // turn detection by silence: the test server has no end-of-turn model
  const session = new RealtimeSession(agent, {
    transport: 'websocket', model: 'voxline',
    config: { audio: { input: { turnDetection: { type: 'server_vad' } } } },
  });
  const seen = { audio: 0, types: [], errors: [] };
  session.on('audio', (event) => { seen.audio += event.data.byteLength; });
  session.on('transport_event', (event) => seen.types.push(event.type));
  session.on('error', (event) => seen.errors.push(JSON.stringify(event.error?.error ?? event.error ?? event)));
  await session.connect({ apiKey: 'sk-agents-sdk-test', url });
  return { session, seen };
}

function replied(session) {
  return new Promise((resolve) => session.once('agent_end', (_ctx, _agent, text) => resolve(text)));
}

function shown(session) {
  return session.history.filter((item) => item.type === 'message').map((item) => ({
    role: item.role,
    status: item.status,
    text: item.content.map((part) => part.text ?? part.transcript ?? '').join(''),
  }));
}

const out = {};
const { session, seen } = await open();

let reply = replied(session);
session.sendMessage('Hi');
out.typed = { text: await within(reply, 'reply to the typed turn'), audio: seen.audio };

seen.audio = 0;
reply = replied(session);
const speech = readFileSync(speechPath);
const frame = 2 * 24000 / 50;
for (let at = 0; at < speech.length; at += frame) {
  const piece = speech.subarray(at, at + frame);
  session.sendAudio(piece.buffer.slice(piece.byteOffset, piece.byteOffset + piece.byteLength));
  await sleep(20);
}
out.spoken = { text: await within(reply, 'reply to the spoken turn'), audio: seen.audio };

const interrupted = new Promise((resolve) => session.once('audio_interrupted', resolve));
session.once('audio_start', () => session.interrupt());
const cancelled = seen.types.length;
session.sendMessage('Tell me a long story');
await within(interrupted, 'interruption');
// the server ends the reply (response.done) and then logs what was played
// (conversation.item.truncated): wait for both, however slowly the second comes
const after = () => seen.types.slice(cancelled);
await within((async () => {
  while (!after().includes('response.done') || !after().includes('conversation.item.truncated')) {
    await sleep(50);
  }
})(), 'response.done and conversation.item.truncated after the interruption');
out.interrupted = { events: seen.types.slice(cancelled) };
out.history = shown(session);
out.errors = seen.errors;
session.close();

const again = await open();
reply = replied(again.session);
again.session.sendMessage('Hi again');
out.reconnected = { text: await within(reply, 'reply after reconnecting') };
again.session.close();
console.log(JSON.stringify(out));
process.exit(0);
