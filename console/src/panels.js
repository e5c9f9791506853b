// The list views: alerts (per-channel attempts, ack, resolve), rule and silence editors (the
// API's validation message shown as is), dead letters with redrive, jobs with live progress,
// and SLA attainment. Each panel refreshes while it is shown.
import { api } from "./api.js";
import { el, errorBox, flash, table, when } from "./dom.js";

function pct(x) {
  return x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`;
}

export class Panel {
  // slug names the test ids (class names do not survive minification)
  constructor(root, title, slug) {
    this.root = root;
    this.slug = slug;
    this.error = errorBox(`${slug}-error`);
    this.body = el("div");
    root.append(el("h2", {}, title), this.error, this.body);
  }

  async activate() {
    await this.tick();
  }

  async tick() {
    try {
      await this.refresh();
      if (!this.keepError) this.error.textContent = "";
    } catch (err) {
      this.error.textContent = err.message;
    }
  }
}

export class AlertsPanel extends Panel {
  constructor(root) {
    super(root, "Alerts", "alerts");
    this.status = el("select", { "data-testid": "alert-status-filter", onchange: () => this.tick() },
      ["", "PENDING", "SENT", "PARTIALLY_SENT", "FAILED", "DEAD_LETTERED", "SUPPRESSED", "ACKNOWLEDGED", "RESOLVED"]
        .map((s) => el("option", { value: s }, s || "any status")));
    this.root.insertBefore(el("div", { class: "toolbar" }, this.status), this.body);
  }

  async refresh() {
    const q = this.status.value ? `&status=${this.status.value}` : "";
    const data = await api("GET", `/api/v1/alerts?limit=200${q}`);
    const rows = data.items.map((a) => el("tr", { "data-testid": "alert-row", "data-id": a.alert_id, "data-status": a.status },
      el("td", {}, when(a.created_ms)), el("td", { class: `sev-${a.severity}` }, a.severity),
      el("td", { "data-testid": "alert-status" }, a.status), el("td", {}, a.title || a.alert_id),
      el("td", {}, Object.entries(a.channels || {}).map(([ch, st]) =>
        el("div", { class: "channel", "data-testid": "alert-channel", "data-channel": ch },
          `${ch}: ${st} · ${(a.attempts || {})[ch] || 0} attempt(s)`,
          (a.last_errors || {})[ch] ? el("div", { class: "muted" }, a.last_errors[ch]) : null))),
      el("td", {}, `level ${a.escalation_level ?? 0}`),
      el("td", {},
        el("button", { "data-testid": "alert-ack", disabled: ["ACKNOWLEDGED", "RESOLVED"].includes(a.status) || null, onclick: () => this.act(a, "ack") }, "Ack"),
        el("button", { "data-testid": "alert-resolve", disabled: a.status === "RESOLVED" || null, onclick: () => this.act(a, "resolve") }, "Resolve"))));
    this.body.replaceChildren(el("p", { class: "muted" }, `${data.total} alert(s)`),
      table(["created", "severity", "status", "title", "channels (state · attempts)", "escalation", ""], rows, "alerts"));
  }

  async act(alert, action) {
    try {
      await api("POST", `/api/v1/alerts/${encodeURIComponent(alert.alert_id)}/${action}`, { note: "from the console" });
      flash(`${action} recorded for ${alert.alert_id}`);
      await this.tick();
    } catch (err) {
      this.error.textContent = err.message;
    }
  }
}

// A JSON editor over one /api/v1 config collection: list, edit, create, delete.
export class ConfigPanel extends Panel {
  constructor(root, title, slug, base, idField, template) {
    super(root, title, slug);
    this.base = base;
    this.idField = idField;
    this.template = template;
    this.editing = null;
    this.list = el("div");
    this.editor = el("textarea", { "data-testid": `${this.slug}-editor`, rows: 14, spellcheck: "false" });
    this.editorError = errorBox(`${this.slug}-editor-error`);
    this.editorTitle = el("h3", {}, "New");
    this.body.append(this.list,
      el("div", { class: "editor" }, this.editorTitle, this.editor,
        el("div", { class: "toolbar" },
          el("button", { "data-testid": `${this.slug}-save`, onclick: () => this.save() }, "Save"),
          el("button", { "data-testid": `${this.slug}-new`, onclick: () => this.edit(null) }, "New")),
        this.editorError));
    this.edit(null);
  }

  columns(item) {
    return [item[this.idField], item.tenant_id, `v${item.version}`];
  }

  async refresh() {
    const data = await api("GET", this.base);
    const rows = data.items.map((item) => el("tr", { "data-testid": `${this.slug}-row`, "data-id": item[this.idField] },
      this.columns(item).map((c) => el("td", {}, c ?? "")),
      el("td", {},
        el("button", { "data-testid": `${this.slug}-edit`, onclick: () => this.edit(item) }, "Edit"),
        el("button", { class: "danger", "data-testid": `${this.slug}-delete`, onclick: () => this.remove(item) }, "Delete"))));
    this.list.replaceChildren(table([...this.headers, ""], rows, `${this.slug}-table`));
  }

  edit(item) {
    this.editing = item ? item[this.idField] : null;
    this.editorTitle.textContent = item ? `Edit ${this.editing}` : "New";
    const shown = item ? { ...item } : this.template();
    delete shown.version;
    delete shown.updated_ms;
    this.editor.value = JSON.stringify(shown, null, 2);
    this.editorError.textContent = "";
  }

  async save() {
    let body;
    try {
      body = JSON.parse(this.editor.value);
    } catch (err) {
      this.editorError.textContent = `not JSON: ${err.message}`;
      return;
    }
    try {
      const saved = this.editing
        ? await api("PUT", `${this.base}/${encodeURIComponent(this.editing)}`, body)
        : await api("POST", this.base, body);
      this.editorError.textContent = "";
      flash(`Saved ${saved[this.idField]} (version ${saved.version})`);
      this.edit(saved);
      await this.tick();
    } catch (err) {
      this.editorError.textContent = err.message;
    }
  }

  async remove(item) {
    if (!confirm(`Delete ${item[this.idField]}?`)) return;
    try {
      await api("DELETE", `${this.base}/${encodeURIComponent(item[this.idField])}`);
      await this.tick();
    } catch (err) {
      this.error.textContent = err.message;
    }
  }
}

export class RulesPanel extends ConfigPanel {
  constructor(root) {
    super(root, "Alert rules", "rules", "/api/v1/alerts/rules", "rule_id", () => ({
      rule_id: "new-rule", severity: "high", channels: [], match: { event_type: "ENTER" },
      title: "{entity_id} entered {geofence_id}" }));
    this.headers = ["rule", "tenant", "version", "severity", "match", "channels"];
  }

  columns(r) {
    return [r.rule_id, r.tenant_id, `v${r.version}`, r.severity, JSON.stringify(r.match || {}), (r.channels || []).join(", ")];
  }
}

export class ChannelsPanel extends ConfigPanel {
  constructor(root) {
    super(root, "Channels", "channels", "/api/v1/alerts/channels", "name", () => ({
      name: "ops-webhook", kind: "webhook", settings: { url: "https://hooks.example/geoflux", secret: "change-me" } }));
    this.headers = ["name", "tenant", "version", "kind"];
  }

  columns(c) {
    return [c.name, c.tenant_id, `v${c.version}`, c.kind];
  }
}

export class SilencesPanel extends ConfigPanel {
  constructor(root) {
    super(root, "Silences", "silences", "/api/v1/silences", "silence_id", () => ({
      matchers: [{ name: "geofence_id", value: "demo-depot" }], ends_ms: Date.now() + 3600_000, comment: "maintenance" }));
    this.headers = ["silence", "tenant", "version", "matchers", "ends"];
  }

  columns(s) {
    return [s.silence_id, s.tenant_id, `v${s.version}`, (s.matchers || []).map((m) => `${m.name}=${m.value}`).join(", "), when(s.ends_ms)];
  }
}

export class DlqPanel extends Panel {
  constructor(root) {
    super(root, "Dead letters", "dlq");
    this.queue = el("select", { "data-testid": "dlq-queue", onchange: () => this.tick() },
      ["", "alerts", "jobs", "locations", "cep", "audit"].map((q) => el("option", { value: q }, q || "all queues")));
    this.detail = el("pre", { "data-testid": "dlq-detail", class: "detail" });
    this.root.insertBefore(el("div", { class: "toolbar" }, this.queue), this.body);
    this.root.append(this.detail);
  }

  async refresh() {
    const data = await api("GET", `/api/v1/dlq${this.queue.value ? `?queue=${this.queue.value}` : ""}`);
    const rows = data.items.map((d) => el("tr", { "data-testid": "dlq-row", "data-id": d.dlq_id },
      el("td", {}, d.queue || d.source_topic || ""), el("td", {}, d.dlq_id), el("td", {}, d.error_class),
      el("td", {}, d.error_message), el("td", {}, String(d.attempts)), el("td", {}, when(d.last_failure_ms)),
      el("td", {},
        el("button", { "data-testid": "dlq-show", onclick: () => this.show(d) }, "Show"),
        el("button", { "data-testid": "dlq-redrive", onclick: () => this.redrive(d) }, "Redrive"))));
    this.body.replaceChildren(el("p", { class: "muted", "data-testid": "dlq-count" }, `${data.total} open record(s)`),
      table(["queue", "id", "error class", "message", "attempts", "last failure", ""], rows, "dlq"));
  }

  async show(d) {
    try {
      this.detail.textContent = JSON.stringify(await api("GET", `/api/v1/dlq/${encodeURIComponent(d.dlq_id)}`), null, 2);
    } catch (err) {
      this.error.textContent = err.message;
    }
  }

  async redrive(d) {
    try {
      const r = await api("POST", `/api/v1/dlq/${encodeURIComponent(d.dlq_id)}/redrive`, undefined, { "X-Geoflux-User": "console" });
      flash(`Redriven ${r.dlq_id} to ${r.redriven_to}`);
      this.detail.textContent = `redriven ${r.dlq_id} -> ${r.redriven_to}`;
      await this.tick();
    } catch (err) {
      this.error.textContent = err.message;
    }
  }
}

export class JobsPanel extends Panel {
  constructor(root) {
    super(root, "Jobs", "jobs");
    this.process = el("select", { "data-testid": "job-process", onchange: () => this.fillTemplate() });
    this.inputs = el("textarea", { "data-testid": "job-inputs", rows: 6, spellcheck: "false" });
    this.submitError = errorBox("job-submit-error");
    this.results = el("pre", { "data-testid": "job-results", class: "detail" });
    this.root.insertBefore(el("div", { class: "editor" }, el("h3", {}, "Submit"), this.process, this.inputs,
      el("div", { class: "toolbar" }, el("button", { "data-testid": "job-submit", onclick: () => this.submit() }, "Run")),
      this.submitError), this.body);
    this.root.append(this.results);
  }

  async activate() {
    if (!this.process.options.length) {
      try {
        const data = await api("GET", "/processes");
        this.process.replaceChildren(...data.processes.map((p) => el("option", { value: p.id }, `${p.id} — ${p.title}`)));
        this.fillTemplate();
      } catch (err) {
        this.error.textContent = err.message;
      }
    }
    await this.tick();
  }

  fillTemplate() {
    const examples = {
      sleep: { seconds: 2 },
      buffer: { geometry: { type: "Point", coordinates: [13.405, 52.52] }, distance_m: 100 },
      "area-length": { geometry: { type: "Polygon", coordinates: [[[13.37, 52.5], [13.39, 52.5], [13.39, 52.512], [13.37, 52.5]]] } },
    };
    this.inputs.value = JSON.stringify(examples[this.process.value] || {}, null, 2);
  }

  async submit() {
    try {
      const inputs = JSON.parse(this.inputs.value);
      const job = await api("POST", `/processes/${encodeURIComponent(this.process.value)}/execution`, { inputs }, { Prefer: "respond-async" });
      this.submitError.textContent = "";
      flash(`Job ${job.jobID} ${job.status}`);
      await this.tick();
    } catch (err) {
      this.submitError.textContent = err.message;
    }
  }

  async refresh() {
    const data = await api("GET", "/jobs?limit=100");
    const jobs = [...data.jobs].sort((a, b) => (b.created || "").localeCompare(a.created || ""));
    const rows = jobs.map((j) => el("tr", { "data-testid": "job-row", "data-id": j.jobID, "data-status": j.status, "data-progress": j.progress },
      el("td", {}, j.jobID), el("td", {}, j.processID), el("td", { "data-testid": "job-status" }, j.status),
      el("td", {}, el("progress", { max: 100, value: j.progress ?? 0 }), el("span", { "data-testid": "job-progress" }, ` ${j.progress ?? 0}%`)),
      el("td", {}, j.tier || ""), el("td", {}, (j.created || "").slice(0, 19)), el("td", {}, j.message || ""),
      el("td", {}, j.status === "successful"
        ? el("button", { "data-testid": "job-show-results", onclick: () => this.showResults(j) }, "Results") : "")));
    this.body.replaceChildren(table(["job", "process", "status", "progress", "tier", "created", "message", ""], rows, "jobs"));
  }

  async showResults(j) {
    try {
      this.results.textContent = JSON.stringify(await api("GET", `/jobs/${encodeURIComponent(j.jobID)}/results`), null, 2);
    } catch (err) {
      this.error.textContent = err.message;
    }
  }
}

export class SlaPanel extends Panel {
  constructor(root) {
    super(root, "Delivery SLA", "sla");
  }

  async refresh() {
    const data = await api("GET", "/api/v1/alerts/sla");
    const rows = data.items.map((r) => el("tr", { "data-testid": "sla-row", "data-severity": r.severity, class: r.attainment !== null && r.attainment < r.target ? "below" : "" },
      el("td", {}, r.severity), el("td", {}, r.channel), el("td", {}, pct(r.attainment)), el("td", {}, pct(r.target)),
      el("td", {}, String(r.decided ?? r.total ?? "")), el("td", {}, ["p50_s", "p95_s", "p99_s"].map((k) => r[k] == null ? "–" : `${r[k].toFixed(2)}s`).join(" / "))));
    this.body.replaceChildren(el("p", { class: "muted" }, `window ${data.window_s}s`),
      table(["severity", "channel", "attainment", "target", "decided", "P50 / P95 / P99"], rows, "sla"));
  }
}
