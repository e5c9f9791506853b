// The console's shell: the API key box, the tabs, and a refresh loop for the visible tab.
import "./style.css";
import { api, apiKey, setApiKey } from "./api.js";
import { el, flash } from "./dom.js";
import { LiveMap } from "./map.js";
import { CepPanel, InboxPanel, StackPanel } from "./live.js";
import { AlertsPanel, ChannelsPanel, DlqPanel, JobsPanel, RulesPanel, SilencesPanel, SlaPanel } from "./panels.js";

const VIEWS = [
  ["map", "Map", LiveMap], ["alerts", "Alerts", AlertsPanel], ["inbox", "Inbox", InboxPanel],
  ["rules", "Rules", RulesPanel], ["channels", "Channels", ChannelsPanel], ["silences", "Silences", SilencesPanel],
  ["cep", "CEP", CepPanel], ["dlq", "Dead letters", DlqPanel], ["jobs", "Jobs", JobsPanel], ["sla", "SLA", SlaPanel],
  ["stack", "Stack", StackPanel],
];
const REFRESH_MS = { map: 2000, jobs: 1000 };

const views = {};
let current = null;
let timer = null;

function show(name) {
  current = name;
  for (const [id, , ] of VIEWS) {
    document.getElementById(`view-${id}`).hidden = id !== name;
    document.querySelector(`[data-tab=${id}]`).classList.toggle("active", id === name);
  }
  location.hash = name;
  if (!apiKey()) return;
  views[name].activate().catch((err) => flash(err.message, "error"));
  clearInterval(timer);
  timer = setInterval(() => views[current].tick().catch(() => {}), REFRESH_MS[name] || 3000);
}

async function whoAmI() {
  const who = document.getElementById("who");
  if (!apiKey()) {
    who.textContent = "enter an API key";
    return;
  }
  try {
    await api("GET", "/api/v1/geofences?limit=1");
    who.textContent = `key ${apiKey().slice(0, 6)}…`;
  } catch (err) {
    who.textContent = err.status === 401 ? "key refused" : err.message;
  }
}

function main() {
  const tabs = document.getElementById("tabs");
  const root = document.getElementById("views");
  for (const [id, label, View] of VIEWS) {
    tabs.append(el("button", { "data-tab": id, "data-testid": `tab-${id}`, onclick: () => show(id) }, label));
    const section = el("section", { id: `view-${id}`, hidden: true });
    root.append(section);
    views[id] = new View(section);
  }
  const keyInput = document.getElementById("api-key");
  keyInput.value = apiKey();
  const useKey = () => {
    setApiKey(keyInput.value);
    views.map.ws?.close();
    views.map.ws = null;
    whoAmI();
    show(current || "map");
  };
  document.getElementById("use-key").addEventListener("click", useKey);
  keyInput.addEventListener("keydown", (e) => e.key === "Enter" && useKey());
  whoAmI();
  const initial = location.hash.slice(1);
  show(views[initial] ? initial : "map");
}

main();
