// Renders the AsyncAPI document (/asyncapi.json) as a readable page: the socket's address,
// then every client message and server event with its fields.
const main = document.getElementById("protocol");

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function resolve(doc, ref) {
  return ref.replace(/^#\//, "").split("/").reduce((node, key) => node[key], doc);
}

function typeOf(doc, schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.anyOf) return schema.anyOf.map((s) => typeOf(doc, s)).join(" | ");
  if (schema.type === "array") return `array of ${typeOf(doc, schema.items)}`;
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  return schema.type || "any";
}

function fields(doc, schema, depth = 0) {
  const table = el("table");
  table.append(el("thead", {}, el("tr", {}, el("th", { textContent: "field" }),
    el("th", { textContent: "type" }), el("th", { textContent: "about" }))));
  const body = el("tbody");
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const required = (schema.required || []).includes(name);
    body.append(el("tr", {}, el("td", {}, el("code", { textContent: name + (required ? "" : "?") })),
      el("td", { textContent: typeOf(doc, prop) }),
      el("td", { textContent: prop.description || prop.title || "" })));
    const target = prop.$ref ? resolve(doc, prop.$ref) : null;
    if (name === "data" && target && target.properties && depth === 0) {
      body.append(el("tr", {}, el("td", { colSpan: 3 }, fields(doc, target, depth + 1))));
    }
  }
  table.append(body);
  return table;
}

function section(doc, title, keys) {
  const part = el("section", {}, el("h2", { textContent: title }));
  for (const key of keys) {
    const message = doc.components.messages[key];
    const payload = message.payload.$ref ? resolve(doc, message.payload.$ref) : message.payload;
    part.append(el("h3", { id: key }, el("code", { textContent: message.name })));
    if (message.summary) part.append(el("p", { textContent: message.summary }));
    if (payload.properties) part.append(fields(doc, payload));
    else part.append(el("p", { textContent: `${message.contentType}: ${message.title}` }));
  }
  return part;
}

async function render() {
  const doc = await (await fetch("/asyncapi.json")).json();
  const channel = doc.channels.session;
  const keys = Object.keys(doc.components.messages);
  main.replaceChildren(
    el("p", { textContent: doc.info.description }),
    el("p", {}, "Address: ", el("code", { textContent: `${channel.address}?token=…[&last_event_id=…]` })),
    section(doc, "Client → server", keys.filter((k) => k.startsWith("client_"))),
    section(doc, "Server → client", keys.filter((k) => k.startsWith("server_"))),
  );
}

render().catch((err) => { main.textContent = `Could not load the protocol: ${err.message}`; });
