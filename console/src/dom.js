// Tiny DOM helpers: every value shown goes through textContent, never innerHTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function table(headers, rows, testid) {
  return el("table", { "data-testid": testid },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows));
}

export function when(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "";
}

let flashTimer;
export function flash(message, kind = "info") {
  const box = document.getElementById("flash");
  box.textContent = message;
  box.className = kind;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => { box.textContent = ""; box.className = ""; }, 6000);
}

export function errorBox(testid) {
  return el("div", { class: "error", "data-testid": testid, role: "alert" });
}
