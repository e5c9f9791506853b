// The one way the console talks to the API: the key from the header box, as a Bearer token on
// fetch; the WebSocket (where a browser cannot set headers) opens with a single-use ticket
// asked for with the key, so the key never appears in a URL.
const KEY = "geoflux.apiKey";

export function apiKey() {
  return localStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  localStorage.setItem(KEY, key.trim());
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Authorization: `Bearer ${apiKey()}`, ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { detail: text };
  }
  if (!resp.ok) {
    throw new ApiError(resp.status, data.detail || data.title || `HTTP ${resp.status}`);
  }
  return data;
}

export async function streamUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const { ticket } = await api("POST", "/api/v1/stream/tickets");
  return `${scheme}://${location.host}/api/v1/stream?ticket=${encodeURIComponent(ticket)}`;
}
