// The settings form and the session's settings, both ways: the form read as the settings
// a new session is made with (or a `session.update` sends), and the settings the server
// answered shown in the form. The form's fields are injected as a lookup by id (`$`), so
// node tests use plain objects with a `value` or `checked`.
import { CALL_FORMATS } from "./call.js";

/** The settings the form says. */
export function readSettings($) {
  const voice = $("voice").value.trim();
  const instructions = $("system-prompt").value.trim();
  return {
    // empty: left out, so a new session gets the server's default and an update keeps it
    ...(instructions ? { system_prompt: instructions } : {}),
    voice: voice || null,
    language: $("language").value.trim() || "en",
    speech_speed: Number($("speed").value),
    auto_play: $("auto-play").checked,
    realtime_tts: $("realtime-tts").checked,
    interruptions: $("backchannels").checked ? "confirmed" : "immediate",
    stt_mode: $("stt-mode").value,
    end_of_speech_ms: Number($("eos").value),
    sampling: { max_tokens: Number($("max-tokens").value) },
  };
}

/** A new session's settings: the form's, with the audio formats the page speaks (a
 *  call's, Opus's 48 kHz both ways, when it will talk over one). */
export function creationSettings(form, { call = false } = {}) {
  return call ? { ...form, ...CALL_FORMATS }
    : { ...form, output_format: "pcm16", input_sample_rate: 16000 };
}

/** The speed slider's label: one decimal. */
export function speedText(value) {
  return Number(value).toFixed(1);
}

/** Show the settings the server holds (what it answered is what applies). */
export function showSettings($, settings) {
  $("system-prompt").value = settings.system_prompt ?? "";
  $("voice").value = settings.voice ?? "";
  $("language").value = settings.language;
  $("speed").value = String(settings.speech_speed);
  $("speed-out").value = speedText(settings.speech_speed);
  $("auto-play").checked = settings.auto_play;
  $("realtime-tts").checked = settings.realtime_tts;
  $("backchannels").checked = settings.interruptions === "confirmed";
  $("stt-mode").value = settings.stt_mode;
  $("eos").value = String(settings.end_of_speech_ms);
  $("max-tokens").value = String(settings.sampling.max_tokens);
}

/** Every voice the models list (`GET /v1/models`), as suggestions for the voice field. */
export function voiceNames(models) {
  return models.data.flatMap((m) => m.voices || []);
}
