// The one way the console talks to the API: the key from the header box, as a Bearer token on
// fetch and as ?api_key= on the WebSocket (a browser cannot set headers there).
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

export function streamUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/api/v1/stream?api_key=${encodeURIComponent(apiKey())}`;
}
