// The pages that show what arrives: the inbox (alerts delivered inside the stack), CEP
// patterns with their recent matches, and the stack's own parts (`geoflux up`'s status).
import { api } from "./api.js";
import { el, table, when } from "./dom.js";
import { ConfigPanel, Panel } from "./panels.js";

export class InboxPanel extends Panel {
  constructor(root) {
    super(root, "Inbox", "inbox");
  }

  async refresh() {
    const data = await api("GET", "/api/v1/inbox?limit=200");
    const rows = data.items.map((m) => el("tr", { "data-testid": "inbox-row", "data-id": m.delivery_id, "data-alert": m.alert_id },
      el("td", {}, when(m.received_ms)), el("td", { class: `sev-${m.severity}` }, m.severity),
      el("td", {}, m.action === "resolve" ? `[resolved] ${m.title}` : m.title), el("td", { class: "muted" }, m.body),
      el("td", {}, m.channel), el("td", {}, m.tenant_id), el("td", {}, String(m.deliveries))));
    this.body.replaceChildren(el("p", { class: "muted", "data-testid": "inbox-count" }, `${data.total} message(s)`),
      table(["received", "severity", "title", "body", "channel", "tenant", "arrived"], rows, "inbox"));
  }
}

export class CepPanel extends ConfigPanel {
  constructor(root) {
    super(root, "CEP patterns and matches", "patterns", "/api/v1/cep/patterns", "pattern_id", () => ({
      pattern_id: "new-pattern", severity: "warning", kind: "sequence", within_s: 1800,
      steps: [{ event_type: "ENTER", geofence_id: "demo-depot" }, { event_type: "ENTER", geofence_id: "demo-airport" }] }));
    this.headers = ["pattern", "tenant", "version", "kind", "severity", "within"];
    this.matches = el("div");
    this.root.append(el("h3", {}, "Recent matches"), this.matches);
  }

  columns(p) {
    return [p.pattern_id, p.tenant_id, `v${p.version}`, p.kind, p.severity, p.within_s ? `${p.within_s}s` : ""];
  }

  async refresh() {
    await super.refresh();
    const data = await api("GET", "/api/v1/cep/matches");
    const rows = data.items.slice(0, 200).map((m) => el("tr", { "data-testid": "match-row", "data-pattern": m.pattern_id },
      el("td", {}, when(m.end_ms)), el("td", {}, m.pattern_id), el("td", {}, m.key),
      el("td", { class: `sev-${m.severity}` }, m.severity), el("td", {}, m.tenant_id)));
    this.matches.replaceChildren(el("p", { class: "muted", "data-testid": "match-count" }, `${data.total} recent match(es)`),
      table(["at", "pattern", "key", "severity", "tenant"], rows, "matches"));
  }
}

export class StackPanel extends Panel {
  constructor(root) {
    super(root, "Stack", "stack");
  }

  async refresh() {
    const s = await api("GET", "/api/v1/stack");
    const rows = s.parts.map((p) => el("tr", { "data-testid": "part-row", "data-name": p.name, "data-state": p.state, class: `state-${p.state}` },
      el("td", {}, p.name), el("td", {}, p.kind), el("td", { "data-testid": "part-state" }, p.state),
      el("td", {}, p.pid ?? "–"), el("td", {}, String(p.restarts)), el("td", {}, p.where),
      el("td", { class: "muted" }, p.last_exit || p.last_error ? `${p.last_exit || ""}: ${p.last_error || ""}` : "")));
    this.body.replaceChildren(
      el("p", { class: s.stale ? "error" : "muted", "data-testid": "stack-age" },
        s.stale ? `geoflux up (pid ${s.up}) has not written its status for ${s.age_s}s: is it still running?`
          : `geoflux up pid ${s.up}, since ${when(s.started_ms)}; status ${s.age_s}s old`),
      table(["part", "kind", "state", "pid", "restarts", "where", "last exit / error"], rows, "stack"));
  }
}
