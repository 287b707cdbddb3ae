// DCP Playground UI: plain JavaScript, no build step, no network beyond this server.
"use strict";

const API = "/api/v1/playground";
const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
let auth = "none";
let current = null;      // the job shown
let events = null;       // EventSource of the job shown
let problemLines = new Set();

// -- who is calling ---------------------------------------------------------------------------

function headers(json) {
  const h = json ? { "content-type": "application/json" } : {};
  if (auth === "none") {
    const u = $("user").value.trim();
    if (u) h["x-user-email"] = u;
  } else if ($("token").value.trim()) {
    h["authorization"] = "Bearer " + $("token").value.trim();
  }
  return h;
}

async function api(method, path, body) {
  let resp;
  try {
    resp = await fetch(API + path, { method, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw { status: 0, error: "The Playground server is not reachable." };
  }
  const data = await resp.json().catch(() => ({ error: resp.statusText }));
  if (!resp.ok) throw { status: resp.status, ...data };
  return data;
}

function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 5000);
}

// -- the editor: a textarea over a highlighted copy ---------------------------------------------

function esc(s) { return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }

function highlightValue(v) {
  const params = (s) => s.replace(/\$\{[A-Za-z_][A-Za-z0-9_]*\}/g, (m) => `<span class="tk-param">${m}</span>`);
  if (/^\s*#/.test(v)) return `<span class="tk-com">${esc(v)}</span>`;
  let out = "";
  const re = /("(?:[^"\\]|\\.)*"|'(?:[^']|'')*')|(#.*$)|(\b(?:true|false|null|yes|no)\b)|(-?\b\d+(?:\.\d+)?\b)|([{}\[\],])/g;
  let last = 0, m;
  while ((m = re.exec(v))) {
    out += params(esc(v.slice(last, m.index)));
    const [text, str, com, bool, num] = m;
    const cls = str ? "tk-str" : com ? "tk-com" : bool ? "tk-bool" : num ? "tk-num" : "tk-punct";
    out += `<span class="${cls}">${str ? params(esc(text)) : esc(text)}</span>`;
    last = m.index + text.length;
  }
  return out + params(esc(v.slice(last)));
}

function highlightLine(line) {
  const m = /^(\s*(?:-\s+)?)([A-Za-z_][\w.-]*)(\s*:)(.*)$/.exec(line);
  if (m && !/^\s*#/.test(line)) {
    return `${esc(m[1])}<span class="tk-key">${esc(m[2])}</span><span class="tk-punct">${m[3]}</span>${highlightValue(m[4])}`;
  }
  return highlightValue(line);
}

function renderEditor() {
  const lines = $("manifest").value.split("\n");
  $("highlight").innerHTML = lines.map((l, i) => {
    const html = highlightLine(l) || " ";
    return problemLines.has(i + 1) ? `<span class="err">${html}</span>` : html;
  }).join("\n") + "\n";
  $("gutter").innerHTML = lines.map((_, i) => `<div class="${problemLines.has(i + 1) ? "bad" : ""}">${i + 1}</div>`).join("");
  syncScroll();
}

function syncScroll() {
  const ta = $("manifest");
  $("highlight").scrollTop = ta.scrollTop;
  $("highlight").scrollLeft = ta.scrollLeft;
  $("gutter").scrollTop = ta.scrollTop;
}

function gotoLine(n) {
  const ta = $("manifest");
  const lines = ta.value.split("\n");
  const start = lines.slice(0, n - 1).reduce((a, l) => a + l.length + 1, 0);
  ta.focus();
  ta.setSelectionRange(start, start + (lines[n - 1] || "").length);
  ta.scrollTop = Math.max(0, (n - 5) * 20);
}

function showProblems(problems, okText) {
  const ul = $("problems");
  ul.innerHTML = "";
  problemLines = new Set(problems.filter((p) => p.line).map((p) => p.line));
  for (const p of problems) {
    const li = document.createElement("li");
    li.textContent = (p.line ? `line ${p.line} · ` : "") + `${p.path}: ${p.message}`;
    if (p.line) li.onclick = () => gotoLine(p.line);
    ul.appendChild(li);
  }
  if (!problems.length && okText) {
    const li = document.createElement("li");
    li.className = "ok";
    li.textContent = okText;
    ul.appendChild(li);
  }
  renderEditor();
}

let validateTimer = null;
function scheduleValidate() {
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validate, 350);
}

async function validate() {
  const manifest = $("manifest").value;
  if (!manifest.trim()) { showProblems([]); return; }
  try {
    const v = await api("POST", "/validate", { manifest, environment: $("environment").value });
    showProblems(v.problems, v.valid ? `✓ valid: ${v.team}/${v.job_name}` : "");
  } catch (e) {
    showProblems([{ path: "(request)", message: e.error || "validation failed" }]);
  }
}

// -- jobs ---------------------------------------------------------------------------------------

function setState(state) {
  const s = $("state");
  s.textContent = state || "—";
  s.className = "state " + (state || "");
  const running = state && !TERMINAL.has(state);
  $("stop").disabled = !running;
  $("check").disabled = !current;
  $("run").disabled = false;
}

function showJob(j) {
  current = j.job_id;
  $("job-empty").hidden = true;
  $("job-meta").hidden = false;
  $("job-id").textContent = j.job_id;
  $("job-where").textContent = `${j.team} / ${j.environment}` + (j.backend ? ` · ${j.backend}` : "");
  const ui = $("spark-ui");
  if (j.spark_ui_url) { ui.href = j.spark_ui_url; ui.textContent = j.spark_ui_url; } else { ui.removeAttribute("href"); ui.textContent = "—"; }
  $("error").hidden = !j.error;
  $("error").textContent = j.error || "";
  setState(j.state);
  if (j.state === "COMPLETED") loadResults(j.job_id);
}

function follow(jobId) {
  if (events) events.close();
  $("log").textContent = "";
  $("log-box").hidden = false;
  $("results-card").hidden = true;
  // EventSource cannot send headers: the events come through fetch + a stream reader instead.
  const ctrl = new AbortController();
  events = { close: () => ctrl.abort() };
  (async () => {
    try {
      const resp = await fetch(`${API}/jobs/${encodeURIComponent(jobId)}/events`, { headers: headers(false), signal: ctrl.signal });
      if (!resp.ok) { const e = await resp.json().catch(() => ({})); throw { error: e.error || resp.statusText }; }
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = /^event: (.*)$/m.exec(chunk)?.[1];
          const data = /^data: (.*)$/m.exec(chunk)?.[1];
          if (ev === "log") { $("log").textContent += JSON.parse(data) + "\n"; $("log").scrollTop = 1e9; }
          if (ev === "state") showJob(JSON.parse(data));
          if (ev === "end") loadHistory();
          if (ev === "error") toast(JSON.parse(data).error + " (use Check Status)");
        }
      }
    } catch (e) {
      if (e.name !== "AbortError") toast(e.error || "Lost the job's live updates; use Check Status.");
    }
  })();
}

async function run() {
  const manifest = $("manifest").value;
  if (!manifest.trim()) { toast("The manifest is empty: write one or load a sample."); return; }
  $("run").disabled = true;
  try {
    const r = await api("POST", "/run", { manifest, environment: $("environment").value, sandbox: $("sandbox").checked });
    showProblems([]);
    showJob({ job_id: r.job_id, state: r.state, team: "", environment: $("environment").value, backend: r.backend });
    follow(r.job_id);
    loadHistory();
  } catch (e) {
    setState(current ? $("state").textContent : "");
    if (e.problems && e.problems.length) showProblems(e.problems);
    toast(e.error || "Run failed.");
  } finally {
    $("run").disabled = false;
  }
}

async function stop() {
  if (!current) return;
  try {
    await api("POST", `/cancel/${current}`);
    showJob(await api("GET", `/status/${current}`));
    loadHistory();
  } catch (e) { toast(e.error || "Stop failed."); }
}

async function check() {
  if (!current) return;
  try {
    const j = await api("GET", `/status/${current}?logs=true`);
    showJob(j);
    if (j.logs) $("log").textContent = j.logs.split("\n").filter((l) => l.includes("[sparkgate-job")).join("\n") + "\n";
  } catch (e) { toast(e.error || "Check failed."); }
}

function cell(v) {
  if (v === null || v === undefined) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

async function loadResults(jobId) {
  try {
    const r = await api("GET", `/results/${jobId}`);
    $("results-card").hidden = false;
    $("result-count").textContent = `${r.count} row${r.count === 1 ? "" : "s"}` + (r.preview.length < r.count ? `, first ${r.preview.length} shown` : "");
    $("result-schema").innerHTML = r.columns.map((c) => `<span>${esc(c.name)} <em>${esc(c.type)}</em></span>`).join("");
    const cols = r.columns.map((c) => c.name);
    const head = "<thead><tr>" + cols.map((c) => `<th>${esc(c)}</th>`).join("") + "</tr></thead>";
    const body = "<tbody>" + r.preview.map((row) => "<tr>" + cols.map((c) => {
      const v = row[c];
      return `<td class="${typeof v === "number" ? "num" : ""}">${esc(cell(v))}</td>`;
    }).join("") + "</tr>").join("") + "</tbody>";
    $("result-table").innerHTML = r.preview.length ? head + body : head + `<tbody><tr><td class="empty">No rows.</td></tr></tbody>`;
    $("result-path").textContent = r.output_path ? `Full output: ${r.output_path}` : "";
  } catch (e) {
    if (e.status !== 409) toast(e.error || "Could not load the results.");
  }
}

async function loadHistory() {
  const ul = $("history");
  try {
    const jobs = await api("GET", "/jobs");
    ul.innerHTML = jobs.length ? "" : `<li class="empty">No jobs yet.</li>`;
    for (const j of jobs) {
      const li = document.createElement("li");
      li.innerHTML = `<span class="id">${esc(j.job_id)}</span><span class="state ${j.state}">${j.state}</span>`;
      li.onclick = () => { showJob(j); if (!TERMINAL.has(j.state)) follow(j.job_id); else { $("log-box").hidden = true; } };
      ul.appendChild(li);
    }
  } catch (e) {
    ul.innerHTML = `<li class="empty">${esc(e.error || "Could not load your jobs.")}</li>`;
  }
}

// -- start --------------------------------------------------------------------------------------

async function init() {
  const ta = $("manifest");
  ta.addEventListener("input", () => { renderEditor(); scheduleValidate(); });
  ta.addEventListener("scroll", syncScroll);
  ta.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") { e.preventDefault(); run(); }
    if (e.key === "Tab") { e.preventDefault(); document.execCommand("insertText", false, "  "); }
  });
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter" && e.target !== ta) { e.preventDefault(); run(); }
  });
  $("run").onclick = run;
  $("stop").onclick = stop;
  $("check").onclick = check;
  $("refresh").onclick = loadHistory;
  $("environment").onchange = scheduleValidate;
  for (const [id, store] of [["user", localStorage], ["token", sessionStorage]]) {
    $(id).value = store.getItem("playground." + id) || "";
    $(id).onchange = () => { store.setItem("playground." + id, $(id).value); loadHistory(); };
  }
  try {
    const who = await api("GET", "/whoami");
    auth = who.auth;
  } catch (e) {
    auth = e.status === 401 ? "token" : "none";
  }
  if (auth !== "none") { $("user").hidden = true; $("token").hidden = false; $("user-label").textContent = "Token"; }
  try {
    const envs = await api("GET", "/environments");
    $("environment").innerHTML = envs.map((e) => `<option ${e === "local" ? "selected" : ""}>${esc(e)}</option>`).join("");
    const samples = await api("GET", "/samples");
    for (const s of samples) {
      const o = document.createElement("option");
      o.value = s.name;
      o.textContent = `${s.name} — ${s.title}`;
      $("samples").appendChild(o);
    }
    $("samples").onchange = () => {
      const s = samples.find((x) => x.name === $("samples").value);
      if (s) { ta.value = s.manifest; renderEditor(); validate(); }
    };
  } catch (e) {
    toast(e.error || "The Playground could not reach its server.");
  }
  renderEditor();
  loadHistory();
}

init();
