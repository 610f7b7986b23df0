// The HTTP API as the page calls it, and the API key it calls it with.
//
// A server that sets VOXLINE_API__KEYS wants `Authorization: Bearer <key>`; the key is
// typed into the page (kept in this tab's sessionStorage only). A 401 that is about the
// key opens the key's field and says so. `fetch`, the elements and the storage are
// injected, so node tests run it with fakes.

const STORAGE_KEY = "voxline.apiKey";

/** Whether a refusal asks for an API key (other 401s are about session tokens). */
export function wantsApiKey(status, message) {
  return status === 401 && /API key/.test(message);
}

/** The message of an error response: the API's `error.message`, else the status code. */
export async function errorMessage(response) {
  let message = `${response.status}`;
  try { message = (await response.json()).error.message; } catch { /* not JSON */ }
  return message;
}

/**
 * `api(path, options)`: `fetch` on `base`, JSON, with the key when there is one; an error
 * response throws its message (after `onKeyWanted(message)` where it asks for the key).
 */
export function apiClient({ base, fetch, apiKey, onKeyWanted }) {
  return async function api(path, options = {}) {
    const key = apiKey();
    const response = await fetch(base + path, {
      ...options,
      headers: {
        "content-type": "application/json",
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(options.headers || {}),
      },
    });
    if (!response.ok) {
      const message = await errorMessage(response);
      if (wantsApiKey(response.status, message)) onKeyWanted(message);
      throw new Error(message);
    }
    return response;
  };
}

/** The key's field (`input`, inside the <details> `box`), kept in `storage` for this tab. */
export class ApiKeyField {
  constructor({ input, box, storage, say }) {
    this.input = input;
    this.box = box;
    this.storage = storage;
    this.say = say;
  }

  /** The key typed in, or "". */
  value() {
    return this.input.value.trim();
  }

  /** Fill the field with the key this tab kept. */
  restore() {
    this.input.value = this.storage.getItem(STORAGE_KEY) ?? "";
  }

  /** Keep the key typed in for this tab. */
  remember() {
    this.storage.setItem(STORAGE_KEY, this.value());
  }

  /** The server wants a key: open its field and say so. */
  ask(message) {
    this.box.open = true;
    this.input.focus();
    this.say(`${message} Enter the API key under Session, then try again.`);
  }
}
