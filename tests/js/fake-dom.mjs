// A few fake DOM nodes for the page's modules that take their elements injected: enough
// of Element for what they call, and no markup at all (setting innerHTML, outerHTML or
// calling insertAdjacentHTML throws: untrusted text goes in as textContent only).
// Not a test file (node --test runs *.test.mjs only).

export class FakeElement {
  constructor(tag = "div") {
    this.tagName = tag.toUpperCase();
    this.children = [];
    this.className = "";
    this.attributes = new Map();
    this.value = "";
    this.checked = false;
    this.disabled = false;
    this.open = false;
    this.focused = false;
    this._text = "";
    const classes = new Set();
    this.classList = {
      add: (...names) => names.forEach((n) => classes.add(n)),
      contains: (name) => classes.has(name),
    };
  }

  get textContent() {
    return this.children.length ? this.children.map((c) => c.textContent).join("") : this._text;
  }

  set textContent(value) {
    this.children = [];
    this._text = value === null || value === undefined ? "" : String(value);
  }

  set innerHTML(_) { throw new Error("innerHTML set: untrusted text must go in as textContent"); }
  set outerHTML(_) { throw new Error("outerHTML set: untrusted text must go in as textContent"); }
  insertAdjacentHTML() { throw new Error("insertAdjacentHTML: untrusted text must go in as textContent"); }

  append(...nodes) { this.children.push(...nodes); }

  insertBefore(node, reference) {
    const at = this.children.indexOf(reference);
    if (at < 0) throw new Error("the reference node is not a child");
    this.children.splice(at, 0, node);
  }

  replaceChildren(...nodes) { this.children = [...nodes]; }
  setAttribute(name, value) { this.attributes.set(name, String(value)); }
  getAttribute(name) { return this.attributes.get(name) ?? null; }
  focus() { this.focused = true; }
}

export const fakeDocument = { createElement: (tag) => new FakeElement(tag) };

/** A lookup by id (`$`) over fake elements made on first use. */
export function fakeById() {
  const elements = new Map();
  const $ = (id) => {
    if (!elements.has(id)) elements.set(id, new FakeElement());
    return elements.get(id);
  };
  return $;
}
