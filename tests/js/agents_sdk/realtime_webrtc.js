// The stock OpenAI Agents SDK for JavaScript in a browser (its UMD bundle, loaded before
// this script), over WebRTC as a web app uses it: the browser's microphone (a WAV file:
// silence, speech, silence) and a RealtimeSession on `POST /v1/realtime/calls`. A spoken
// turn, a typed turn, a reply interrupted at its first words, then a new call that still
// answers. `window.runAgentsSdk(base)` resolves to what the SDK showed;
// tests/api/test_agents_sdk.py runs it in Chromium and checks it.
window.runAgentsSdk = async (base) => {
  const { RealtimeAgent, RealtimeSession, OpenAIRealtimeWebRTC } = window.OpenAIAgentsRealtime;
  const agent = new RealtimeAgent({ name: "Assistant", instructions: "Answer briefly." });
  const within = (promise, what, ms = 30000) => Promise.race([promise, new Promise(
    (_, reject) => setTimeout(() => reject(new Error(`no ${what} in ${ms} ms`)), ms))]);

  async function open() {
    // the key is a placeholder (the test server has none): a browser app would use an
    // ephemeral key; turn detection by silence (the test server has no end-of-turn model)
    const audioElement = document.createElement("audio"); // where the SDK plays the reply
    const transport = new OpenAIRealtimeWebRTC({ useInsecureApiKey: true, audioElement,
                                                 baseUrl: `${base}/v1/realtime/calls` });
    const session = new RealtimeSession(agent, {
      transport, model: "voxline",
      config: { audio: { input: { turnDetection: { type: "server_vad" } } } },
    });
    const seen = { types: [], errors: [] };
    session.on("transport_event", (event) => seen.types.push(event.type));
    session.on("error", (event) => seen.errors.push(JSON.stringify(event.error?.error ?? event.error)));
    await within(session.connect({ apiKey: "sk-agents-sdk-test" }), "connection");
    return { session, seen, transport, audioElement };
  }
  const replied = (session) => new Promise(
    (resolve) => session.once("agent_end", (_ctx, _agent, text) => resolve(text)));
  const shown = (session) => session.history.filter((item) => item.type === "message").map(
    (item) => ({ role: item.role, status: item.status,
                 text: item.content.map((part) => part.text ?? part.transcript ?? "").join("") }));

  const out = {};
  const { session, seen, transport, audioElement: audio } = await open();
  out.callId = transport.callId ?? null;
  out.spoken = { text: await within(replied(session), "reply to the spoken turn") };
  out.typed = { text: await within((() => { const r = replied(session); session.sendMessage("Hi"); return r; })(),
                                   "reply to the typed turn") };
  const mark = seen.types.length;
  const firstWords = new Promise((resolve) => session.on("transport_event", (event) => {
    if (event.type === "response.output_audio_transcript.delta") resolve();
  }));
  session.sendMessage("Tell me a long story");
  await within(firstWords, "first words of the story");
  session.interrupt();
  await within((async () => {
    while (!seen.types.slice(mark).includes("response.done")) await new Promise((r) => setTimeout(r, 50));
  })(), "response.done after the interruption");
  out.interrupted = { events: seen.types.slice(mark) };
  out.history = shown(session);
  out.errors = seen.errors;
  out.remoteTracks = audio.srcObject ? audio.srcObject.getAudioTracks().length : 0;
  session.close();

  const again = await open();
  const reply = replied(again.session);
  again.session.sendMessage("Hi again");
  out.reconnected = { text: await within(reply, "reply after the new call") };
  again.session.close();
  return out;
};
