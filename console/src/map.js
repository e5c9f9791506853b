// The live map: geofences (drawn and edited here), entity positions and ENTER/EXIT/DWELL events
// from the WebSocket gateway, over a configurable tile basemap or the bundled country outlines.
import L from "leaflet";
import "leaflet/dist/leaflet.css";
import { feature } from "topojson-client";
import world from "world-atlas/countries-110m.json";
import { api, streamUrl } from "./api.js";
import { el, errorBox, flash, when } from "./dom.js";

const TILES = "geoflux.tiles";
const EVENT_COLOURS = { ENTER: "#1a9850", EXIT: "#d73027", DWELL: "#fdae61" };
const MAX_EVENTS = 200;
const FENCES_MS = 15000;

export class LiveMap {
  constructor(root) {
    this.root = root;
    this.fences = new Map(); // id -> {feature, layer}
    this.entities = new Map(); // id -> circleMarker
    this.events = [];
    this.drawing = null; // [latlng...] while drawing
    this.selected = null;
    this.build();
  }

  build() {
    const mapDiv = el("div", { id: "map", "data-testid": "map" });
    this.eventList = el("ol", { class: "events", "data-testid": "events" });
    this.fenceList = el("ul", { class: "fences", "data-testid": "fence-list" });
    this.drawBtn = el("button", { "data-testid": "draw", onclick: () => this.startDrawing() }, "Draw geofence");
    this.finishBtn = el("button", { "data-testid": "finish", disabled: true, onclick: () => this.finishDrawing() }, "Finish shape");
    this.cancelBtn = el("button", { "data-testid": "cancel-draw", onclick: () => this.cancelDrawing() }, "Cancel");
    this.form = this.buildForm();
    this.tilesInput = el("input", { "data-testid": "tiles-url", placeholder: "https://tile.example/{z}/{x}/{y}.png (empty: offline outlines)", value: localStorage.getItem(TILES) || "" });
    this.streamState = el("span", { "data-testid": "stream-state", class: "muted" }, "stream: closed");
    const side = el("aside", { class: "side" },
      el("div", { class: "toolbar" }, this.drawBtn, this.finishBtn, this.cancelBtn),
      this.form,
      el("h3", {}, "Geofences"), this.fenceList,
      el("h3", {}, "Live events ", this.streamState), this.eventList,
      el("details", {}, el("summary", {}, "Basemap"), this.tilesInput,
        el("button", { onclick: () => this.setTiles(this.tilesInput.value) }, "Apply")));
    this.root.append(el("div", { class: "map-view" }, mapDiv, side));

    this.map = L.map(mapDiv, { preferCanvas: false, doubleClickZoom: false }).setView([52.52, 13.405], 12);
    const countries = feature(world, world.objects.countries);
    this.outlines = L.geoJSON(countries, { style: { color: "#778", weight: 1, fillColor: "#eef0e6", fillOpacity: 1 }, interactive: false });
    this.setTiles(localStorage.getItem(TILES) || "");
    this.fenceLayer = L.layerGroup().addTo(this.map);
    this.entityLayer = L.layerGroup().addTo(this.map);
    this.eventLayer = L.layerGroup().addTo(this.map);
    this.map.on("click", (e) => this.addVertex(e.latlng));
  }

  buildForm() {
    this.nameInput = el("input", { "data-testid": "fence-name", placeholder: "name", required: true });
    this.tenantInput = el("input", { "data-testid": "fence-tenant", placeholder: "tenant (operator keys only)" });
    this.dwellInput = el("input", { "data-testid": "fence-dwell", type: "number", min: 0, placeholder: "dwell seconds (optional)" });
    this.formError = errorBox("fence-error");
    this.formTitle = el("h3", {}, "New geofence");
    this.deleteBtn = el("button", { "data-testid": "fence-delete", class: "danger", onclick: () => this.deleteSelected() }, "Delete");
    this.reshapeBtn = el("button", { "data-testid": "fence-reshape", onclick: () => this.startDrawing(true) }, "Redraw shape");
    return el("form", { class: "fence-form hidden", "data-testid": "fence-form", onsubmit: (e) => { e.preventDefault(); this.save(); } },
      this.formTitle, this.nameInput, this.tenantInput, this.dwellInput,
      el("div", { class: "toolbar" }, el("button", { type: "submit", "data-testid": "fence-save" }, "Save"),
        this.reshapeBtn, this.deleteBtn,
        el("button", { type: "button", onclick: () => this.closeForm() }, "Close")),
      this.formError);
  }

  setTiles(url) {
    localStorage.setItem(TILES, url.trim());
    if (this.tiles) this.map.removeLayer(this.tiles);
    this.tiles = null;
    if (url.trim()) {
      this.map.removeLayer(this.outlines);
      this.tiles = L.tileLayer(url.trim(), { maxZoom: 19, attribution: "basemap: configured tiles" }).addTo(this.map);
      this.tiles.on("tileerror", () => { if (!this.map.hasLayer(this.outlines)) this.outlines.addTo(this.map).bringToBack(); });
    } else {
      this.outlines.addTo(this.map).bringToBack();
    }
  }

  // -- geofences ---------------------------------------------------------------------------
  async refreshFences() {
    const all = [];
    for (let offset = 0; ; offset += 500) {
      const page = await api("GET", `/api/v1/geofences?limit=500&offset=${offset}`);
      all.push(...page.features);
      if (!page.next) break;
    }
    this.fencesAt = Date.now();
    this.fenceLayer.clearLayers();
    this.fences.clear();
    this.fenceList.replaceChildren();
    for (const f of all) {
      const layer = this.fenceShape(f).addTo(this.fenceLayer);
      layer.on("click", (e) => { L.DomEvent.stop(e); if (this.drawing) this.addVertex(e.latlng); else this.select(f.id); });
      layer.bindTooltip(f.properties.name || f.id);
      this.fences.set(f.id, { feature: f, layer });
      this.fenceList.append(el("li", { "data-testid": "fence-item", "data-id": f.id },
        el("a", { href: "#", onclick: (e) => { e.preventDefault(); this.select(f.id, true); } }, f.properties.name || f.id),
        el("span", { class: "muted" }, ` ${f.properties.tenant_id || ""} v${f.properties.version ?? ""}`)));
    }
  }

  fenceShape(f) {
    const style = { color: "#3366cc", weight: 2, fillOpacity: 0.15, className: `fence fence-${f.id}` };
    if (f.geometry.type === "Point") {
      const [lon, lat] = f.geometry.coordinates;
      return L.circle([lat, lon], { ...style, radius: f.properties.radius_m || 50 });
    }
    return L.geoJSON(f, { style: () => style });
  }

  select(id, pan = false) {
    const entry = this.fences.get(id);
    if (!entry) return;
    this.selected = id;
    const p = entry.feature.properties;
    this.formTitle.textContent = `Geofence ${id}`;
    this.nameInput.value = p.name || "";
    this.tenantInput.value = p.tenant_id || "";
    this.dwellInput.value = p.dwell_seconds ?? "";
    this.pendingGeometry = entry.feature.geometry;
    this.deleteBtn.hidden = false;
    this.reshapeBtn.hidden = false;
    this.openForm();
    if (pan) this.map.fitBounds(entry.layer.getBounds(), { maxZoom: 15 });
  }

  openForm() {
    this.formError.textContent = "";
    this.form.classList.remove("hidden");
  }

  closeForm() {
    this.form.classList.add("hidden");
    this.selected = null;
    this.cancelDrawing();
  }

  startDrawing(reshape = false) {
    this.drawing = [];
    this.reshaping = reshape;
    if (!reshape) this.selected = null;
    this.preview?.remove();
    this.preview = L.polygon([], { color: "#e66101", dashArray: "4", className: "draw-preview" }).addTo(this.map);
    this.map.getContainer().classList.add("drawing");
    this.finishBtn.disabled = true;
    flash("Click the map to add corners, then Finish shape.");
  }

  addVertex(latlng) {
    if (!this.drawing) return;
    this.drawing.push(latlng);
    this.preview.setLatLngs(this.drawing);
    L.circleMarker(latlng, { radius: 3, className: "draw-vertex" }).addTo(this.eventLayer);
    this.finishBtn.disabled = this.drawing.length < 3;
  }

  finishDrawing() {
    if (!this.drawing || this.drawing.length < 3) return;
    const ring = this.drawing.map((p) => [Number(p.lng.toFixed(6)), Number(p.lat.toFixed(6))]);
    ring.push(ring[0]);
    this.pendingGeometry = { type: "Polygon", coordinates: [ring] };
    this.map.getContainer().classList.remove("drawing");
    this.drawing = null;
    if (!this.reshaping) {
      this.formTitle.textContent = "New geofence";
      this.nameInput.value = "";
      this.dwellInput.value = "";
      this.deleteBtn.hidden = true;
      this.reshapeBtn.hidden = true;
    }
    this.openForm();
    this.nameInput.focus();
  }

  cancelDrawing() {
    this.drawing = null;
    this.preview?.remove();
    this.map.getContainer().classList.remove("drawing");
    this.finishBtn.disabled = true;
  }

  async save() {
    const props = this.selected ? { ...this.fences.get(this.selected).feature.properties } : {};
    delete props.version;
    props.name = this.nameInput.value.trim();
    if (this.tenantInput.value.trim()) props.tenant_id = this.tenantInput.value.trim();
    if (this.dwellInput.value !== "") props.dwell_seconds = Number(this.dwellInput.value);
    else delete props.dwell_seconds;
    const body = { type: "Feature", geometry: this.pendingGeometry, properties: props };
    try {
      const saved = this.selected
        ? await api("PUT", `/api/v1/geofences/${encodeURIComponent(this.selected)}`, body)
        : await api("POST", "/api/v1/geofences", body);
      flash(`Saved geofence ${saved.properties.name} (${saved.id})`);
      this.preview?.remove();
      await this.refreshFences();
      this.select(saved.id);
    } catch (err) {
      this.formError.textContent = err.message;
    }
  }

  async deleteSelected() {
    if (!this.selected || !confirm(`Delete geofence ${this.selected}?`)) return;
    try {
      await api("DELETE", `/api/v1/geofences/${encodeURIComponent(this.selected)}`);
      flash(`Deleted ${this.selected}`);
      this.closeForm();
      await this.refreshFences();
    } catch (err) {
      this.formError.textContent = err.message;
    }
  }

  // -- entities and events -----------------------------------------------------------------
  moveEntity(id, lon, lat, label) {
    let m = this.entities.get(id);
    if (!m) {
      m = L.circleMarker([lat, lon], { radius: 5, color: "#333", fillColor: "#4575b4", fillOpacity: 0.9, weight: 1, className: "entity" }).addTo(this.entityLayer);
      this.entities.set(id, m);
    }
    m.setLatLng([lat, lon]);
    m.bindTooltip(label || id);
  }

  async refreshEntities() {
    try {
      const body = await api("GET", "/api/v1/entities");
      for (const e of body.items) this.moveEntity(e.entity_id, e.lon, e.lat, `${e.entity_id} ${when(e.ts_ms)}`);
    } catch {
      // positions then come from events only
    }
  }

  onEvent(ev) {
    this.moveEntity(ev.entity_id, ev.lon, ev.lat);
    const colour = EVENT_COLOURS[ev.event_type] || "#777";
    const marker = L.circleMarker([ev.lat, ev.lon], { radius: 9, color: colour, weight: 3, fill: false, className: `event-marker event-${ev.event_type}` })
      .bindTooltip(`${ev.event_type} ${ev.entity_id} in ${ev.geofence_id}`).addTo(this.eventLayer);
    setTimeout(() => marker.remove(), 30000);
    this.eventList.prepend(el("li", { "data-testid": "event", "data-type": ev.event_type, "data-geofence": ev.geofence_id, "data-entity": ev.entity_id, class: `ev-${ev.event_type}` },
      el("b", {}, ev.event_type), ` ${ev.entity_id} · ${this.fences.get(ev.geofence_id)?.feature.properties.name || ev.geofence_id} · ${when(ev.ts_ms)}`));
    while (this.eventList.children.length > MAX_EVENTS) this.eventList.lastChild.remove();
  }

  async connect() {
    this.ws?.close();
    let url;
    try {
      url = await streamUrl();
    } catch (e) {
      this.streamState.textContent = `stream: ${e.message}`;
      if (e.status !== 401 && e.status !== 403) setTimeout(() => this.connect(), 3000);
      return;
    }
    const ws = new WebSocket(url);
    this.ws = ws;
    const clientId = `console-${Math.random().toString(36).slice(2, 10)}`;
    ws.onopen = () => ws.send(JSON.stringify({ type: "subscribe", client_id: clientId, filter: {}, from: "latest" }));
    ws.onmessage = (msg) => {
      const m = JSON.parse(msg.data);
      if (m.type === "subscribed") this.streamState.textContent = "stream: live";
      if (m.type === "event") {
        this.onEvent(m.event);
        ws.send(JSON.stringify({ type: "ack", seq: m.seq }));
      }
    };
    ws.onclose = (e) => {
      this.streamState.textContent = `stream: closed ${e.code} ${e.reason || ""}`;
      if (this.ws === ws && e.code !== 4003) setTimeout(() => this.ws === ws && this.connect(), 3000);
    };
  }

  async activate() {
    this.map.invalidateSize();
    await this.refreshFences();
    await this.refreshEntities();
    if (!this.ws || this.ws.readyState > 1) this.connect();
  }

  // fences change elsewhere too (another operator, an import, the demo starting up): reloaded
  // every FENCES_MS, but never under a shape being drawn or edited
  async tick() {
    if (!this.drawing && !this.selected && Date.now() - (this.fencesAt || 0) > FENCES_MS) await this.refreshFences();
    return this.refreshEntities();
  }
}
