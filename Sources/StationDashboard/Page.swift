/// The dashboard page: one self-contained HTML file (no external assets). Live updates come from
/// `/events` read with fetch() so the bearer token can go in a header (EventSource cannot send one).
enum DashboardPage {
    static let html = #"""
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>espforge station</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#111;color:#eee}
header{display:flex;gap:2em;align-items:baseline;padding:.6em 1em;background:#222;flex-wrap:wrap}
header h1{font-size:1.2em;margin:0}
.counter{font-size:1.6em;font-weight:600}.counter small{display:block;font-size:.45em;font-weight:400;color:#aaa}
#tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:.6em;padding:1em}
.tile{border-radius:6px;padding:.6em;background:#333;min-height:7em;border-left:10px solid #555}
.tile h2{margin:0;font-size:1.3em;display:flex;justify-content:space-between}
.tile .phase{font-size:.7em;text-transform:uppercase;padding:.1em .4em;border-radius:3px;background:#0006}
.tile.waiting{border-color:#666}.tile.provisioning{border-color:#2f7de1;background:#1d2a3c}
.tile.result.pass,.tile.removal.pass{border-color:#2ea043;background:#17301d}
.tile.result.fail,.tile.removal.fail{border-color:#e5534b;background:#3a1a1a}
.tile.faulty{border-color:#d29922;background:#3a2e12}.tile.stopped{opacity:.6}
.bar{height:8px;background:#0008;border-radius:4px;margin:.4em 0}.bar div{height:100%;background:#2f7de1;border-radius:4px}
.tile .mac{font-family:monospace}.tile .last{font-size:.85em;color:#ccc;word-break:break-word}
section{padding:0 1em 1em}table{border-collapse:collapse;width:100%;font-size:.9em}
td,th{border-bottom:1px solid #333;padding:.25em .5em;text-align:left;vertical-align:top}
a{color:#6cb6ff;cursor:pointer}#chart{height:60px;display:flex;align-items:flex-end;gap:2px}
#chart div{background:#2ea043;flex:1;min-width:3px;max-width:24px}.mono{font-family:monospace;word-break:break-all}#device table.kv th{width:14em;color:#aaa}#device tr.failed td{color:#ff7b72}
input{background:#222;color:#eee;border:1px solid #555;padding:.3em}
</style></head><body>
<header><h1 id="title">espforge station</h1>
<div class="counter" id="passed">0<small>passed</small></div>
<div class="counter" id="failed">0<small>failed</small></div>
<div class="counter" id="skipped">0<small>skipped</small></div>
<div class="counter" id="fpy">-<small>first-pass yield</small></div>
<div class="counter" id="bph">0<small>boards / hour</small></div>
<div id="status"></div></header>
<div id="tiles"></div>
<section><h3>Boards per 5 minutes</h3><div id="chart"></div></section>
<section><h3>Failures</h3><table id="failures"><tr><th>time</th><th>slot</th><th>MAC</th><th>step</th><th>reason</th><th>doctor</th></tr></table></section>
<section><h3>Registry search</h3><input id="q" placeholder="MAC or identity"> <button id="go">search</button>
<table id="found"></table><div id="device"></div></section>
<script>
const token = new URLSearchParams(location.search).get("token");
const headers = token ? {Authorization: "Bearer " + token} : {};
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
let snap = null;
function render() {
  if (!snap) return;
  const c = snap.counters;
  document.getElementById("title").textContent = "espforge station" + (snap.station ? " " + snap.station : "") + (snap.stopping ? " (stopping)" : "");
  for (const k of ["passed","failed","skipped"]) document.getElementById(k).firstChild.textContent = c[k];
  document.getElementById("fpy").firstChild.textContent = snap.first_pass_yield == null ? "-" : (snap.first_pass_yield*100).toFixed(1)+" %";
  document.getElementById("bph").firstChild.textContent = Math.round(snap.boards_per_hour);
  const now = Date.now();
  document.getElementById("tiles").innerHTML = snap.slots.map(s => {
    const r = s.lastResult, ok = r && (r.outcome === "passed" || r.outcome === "skipped");
    const el = ((now - Date.parse(s.since)) / 1000).toFixed(0);
    const last = !r ? "" : r.outcome === "failed" ? "FAILED at " + r.failedStep + ": " + r.reason + (r.diagnosis ? " [" + r.diagnosis + "]" : "")
      : r.outcome === "passed" ? "PASSED" + (r.identity ? " as " + r.identity : "") : r.outcome;
    const lastLabel = (s.phase === "result" || s.phase === "removal") ? "" : "previous board: ";
    return `<div class="tile ${s.phase} ${r ? (ok ? "pass" : "fail") : ""}"><h2>${esc(s.name)} <span class="phase">${esc(s.phase)}</span></h2>
      <div class="mac">${esc(s.mac || "")} ${esc(s.identity || "")}</div>
      <div>${esc(s.step || "")} ${el}s</div><div class="bar"><div style="width:${(s.progress*100).toFixed(0)}%"></div></div>
      <div class="last">${last ? esc(lastLabel + last) : ""}</div></div>`;
  }).join("");
  const fails = snap.recent.filter(x => x.result.outcome === "failed").reverse();
  document.getElementById("failures").innerHTML = "<tr><th>time</th><th>slot</th><th>MAC</th><th>step</th><th>reason</th><th>doctor</th></tr>" +
    fails.map(f => `<tr><td>${esc(f.time)}</td><td>${esc(f.slot)}</td><td><a data-mac="${esc(f.result.mac)}">${esc(f.result.mac)}</a></td>
      <td>${esc(f.result.failedStep)}</td><td>${esc(f.result.reason)}</td><td>${esc(f.result.diagnosis)}</td></tr>`).join("");
  const bins = {}; for (const x of snap.recent) if (x.result.outcome !== "failed") { const b = Math.floor(Date.parse(x.time) / 300000); bins[b] = (bins[b] || 0) + 1; }
  const keys = Object.keys(bins).map(Number).sort(), max = Math.max(1, ...Object.values(bins));
  document.getElementById("chart").innerHTML = keys.map(k => `<div title="${bins[k]}" style="height:${100*bins[k]/max}%"></div>`).join("");
}
async function stream() {
  try {
    const res = await fetch("/events", {headers});
    if (!res.ok) { document.getElementById("status").textContent = "events: HTTP " + res.status; return setTimeout(stream, 3000); }
    document.getElementById("status").textContent = "live";
    const reader = res.body.getReader(), dec = new TextDecoder(); let buf = "";
    for (;;) {
      const {value, done} = await reader.read(); if (done) break;
      buf += dec.decode(value, {stream: true}); let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const msg = buf.slice(0, i); buf = buf.slice(i + 2);
        const name = (msg.match(/^event: (.*)$/m) || [])[1], data = (msg.match(/^data: (.*)$/m) || [])[1];
        if (!data) continue; const obj = JSON.parse(data);
        if (name === "snapshot") snap = obj;
        else if (snap && obj.state) { const k = snap.slots.findIndex(s => s.name === obj.slot); if (k >= 0) snap.slots[k] = obj.state; if (obj.counters) snap.counters = obj.counters; }
        render();
      }
    }
  } catch (e) { document.getElementById("status").textContent = "reconnecting"; }
  setTimeout(stream, 2000);
}
// The device page: what the registry holds for one board, as tables (never key material: the
// registry has digests and key ids only). Opened by a click on a MAC or directly as #device=MAC.
const kv = (title, obj, id) => {
  const rows = Object.entries(obj || {}).filter(([, v]) => v !== null && v !== undefined && v !== "").sort();
  return rows.length ? `<h4>${esc(title)}</h4><table class="kv"${id ? ` id="${id}"` : ""}>` +
    rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td class="mono">${esc(v)}</td></tr>`).join("") + "</table>" : "";
};
const took = (a, b) => { const d = (Date.parse(b) - Date.parse(a)) / 1000; return isFinite(d) ? d.toFixed(1) + " s" : "-"; };
const size = n => n == null ? null : n % 1048576 === 0 ? n / 1048576 + " MB" : n + " bytes";
async function device(mac) {
  const el = document.getElementById("device");
  const r = await fetch("/api/devices/" + encodeURIComponent(mac), {headers});
  if (!r.ok) { el.innerHTML = `<h3>${esc(mac)}</h3><p>${r.status === 404 ? "not in the registry" : "HTTP " + r.status}</p>`; return; }
  const p = await r.json(), d = p.device;
  el.innerHTML = `<h3 id="device-mac">${esc(d.mac)} <span class="status ${esc(d.status)}">${esc(d.status)}</span></h3>` +
    kv("device", {identity: d.identity, station: d.station, chip: p.chip + (p.chipRevision == null ? "" : " rev " + p.chipRevision),
                  flash: size(p.flashSize), "flash id": p.flashID, manifest: p.manifestHash, updated: d.updatedAt, failure: d.failure}, "facts") +
    `<h4>steps</h4><table id="steps"><tr><th>step</th><th>outcome</th><th>started</th><th>took</th><th>detail</th></tr>` +
    p.steps.map(s => `<tr class="${esc(s.outcome)}"><td>${esc(s.step)}</td><td>${esc(s.outcome)}</td><td>${esc(s.startedAt)}</td>
      <td>${s.finishedAt ? took(s.startedAt, s.finishedAt) : "-"}</td><td>${esc(s.detail)}</td></tr>`).join("") + "</table>" +
    kv("images written (SHA-256)", p.imageHashes, "images") + kv("key digests", p.keyDigests, "digests") +
    kv("key ids", p.keyIDs, "keyids") + kv("eFuses read back", p.efuseSummary, "efuses") +
    `<h4>events</h4><table id="events"><tr><th>at</th><th>event</th><th>station</th><th>detail</th></tr>` +
    p.events.map(e => `<tr><td>${esc(e.at)}</td><td>${esc(e.kind)}</td><td>${esc(e.station)}</td><td>${esc(e.detail)}</td></tr>`).join("") + "</table>";
}
const fromHash = () => { const m = location.hash.match(/device=([^&]+)/); if (m) device(decodeURIComponent(m[1])); };
window.addEventListener("hashchange", fromHash);
document.addEventListener("click", e => { const m = e.target.dataset && e.target.dataset.mac; if (m) location.hash = "device=" + encodeURIComponent(m); });
document.getElementById("go").onclick = async () => {
  const r = await fetch("/api/search?q=" + encodeURIComponent(document.getElementById("q").value), {headers});
  const rows = r.ok ? await r.json() : [];
  document.getElementById("found").innerHTML = rows.map(d => `<tr><td><a data-mac="${esc(d.mac)}">${esc(d.mac)}</a></td><td>${esc(d.status)}</td><td>${esc(d.identity)}</td><td>${esc(d.station)}</td><td>${esc(d.failure)}</td></tr>`).join("");
};
setInterval(render, 1000);
fromHash();
stream();
</script></body></html>
"""#
}
