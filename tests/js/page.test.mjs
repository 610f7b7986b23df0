// The page's modules as a whole, read as files: untrusted text never goes in as markup,
// and app.js (which needs a browser to run) imports only names its modules export
// (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const STATIC = new URL("../../deployments/api/static/", import.meta.url);
const modules = (await readdir(fileURLToPath(STATIC))).filter((name) => name.endsWith(".js"));

test("no module writes markup: text goes in as textContent", async () => {
  const markup = /\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function\(/;
  for (const name of modules) {
    const source = await readFile(new URL(name, STATIC), "utf8");
    assert.doesNotMatch(source, markup, name);
  }
});

test("every name app.js imports is exported by its module", async () => {
  const source = await readFile(new URL("app.js", STATIC), "utf8");
  const imports = [...source.matchAll(/import\s*\{([^}]*)\}\s*from\s*"(\.\/[^"]+)"/g)];
  assert.ok(imports.length >= 10);
  for (const [, names, path] of imports) {
    const module = await import(new URL(path, STATIC).href);
    for (const name of names.split(",").map((n) => n.trim()).filter(Boolean)) {
      assert.equal(typeof module[name], "function", `${name} from ${path}`);
    }
  }
});
