// molt dashboard: one EventSource (/ui/events) feeds everything; actions are same-origin POSTs to the admin
// API that need a dashboard session (HttpOnly cookie from POST /ui/login). No framework, no network beyond
// this origin.
import uPlot from '/ui/vendor/uplot.esm.js';

const MAX_SAMPLES = 300;
const MAX_TIMELINE = 200;
const COLORS = ['#2f5fd0', '#1f8a4c', '#c8341f', '#b7791f', '#7b3fc4', '#0f8a8a', '#6b7385'];
const ONE_STEP_TIP = 'One-step promote applies to a rollout under canary analysis (spec.transition.analysis); Promote finishes any transition.';

// loginEnabled until the stream says otherwise: a remote viewer without a session gets no stream (401) and
// must be able to log in.
const state = { status: null, samples: [], events: [], readOnly: false, loginEnabled: true, session: null };
let source = null;
const cards = new Map(); // app -> { root, tbody, buttons, charts, key }
const $ = (id) => document.getElementById(id);

/** createElement with attributes and children (strings become text nodes: nothing is parsed as HTML). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null) el.append(c instanceof Node ? c : String(c));
  return el;
}

function notice(text, isError = false) {
  const n = $('notice');
  n.textContent = text;
  n.className = isError ? 'error' : '';
  n.hidden = !text;
}

// ---- live updates -----------------------------------------------------------------------------------------

function connect() {
  source?.close();
  const es = (source = new EventSource('/ui/events'));
  es.addEventListener('open', () => setConn(true));
  es.addEventListener('error', () => {
    setConn(false);
    // The browser retries dropped streams itself; a refused one (401, 503) is closed for good: try again later.
    if (es.readyState === EventSource.CLOSED && source === es) setTimeout(() => { if (source === es) connect(); }, 5000);
  });
  es.addEventListener('init', (e) => {
    const d = JSON.parse(e.data);
    state.status = d.status ?? null;
    state.samples = d.samples ?? [];
    state.events = (d.events ?? []).slice().sort((a, b) => a.time - b.time || a.id - b.id);
    state.readOnly = !!d.readOnly;
    state.loginEnabled = !!d.loginEnabled;
    state.session = d.session;
    renderAuth();
    renderApps();
    renderTimeline();
  });
  es.addEventListener('sample', (e) => {
    const d = JSON.parse(e.data);
    state.status = d.status;
    state.samples.push(d.sample);
    if (state.samples.length > MAX_SAMPLES) state.samples.splice(0, state.samples.length - MAX_SAMPLES);
    renderApps();
  });
  es.addEventListener('event', (e) => {
    const ev = JSON.parse(e.data);
    if (state.events.some((x) => x.id === ev.id)) return;
    state.events.push(ev);
    if (state.events.length > 500) state.events.splice(0, state.events.length - 500);
    prependEvent(ev);
  });
}

function setConn(live) {
  const c = $('conn');
  c.textContent = live ? 'live' : 'reconnecting…';
  c.className = `pill ${live ? 'on' : 'off'}`;
}

// ---- auth -------------------------------------------------------------------------------------------------

function canAct() {
  return !!state.session && !state.readOnly;
}

function renderAuth() {
  $('readonly').hidden = !state.readOnly;
  $('login').hidden = !state.loginEnabled || !!state.session;
  $('logout').hidden = !state.session;
  $('who').hidden = !state.session;
  if (state.session) {
    const until = new Date(state.session.expires);
    $('who').textContent = `logged in (session ${state.session.tag}, until ${until.toLocaleTimeString()})`;
    clearTimeout(renderAuth.expiry);
    renderAuth.expiry = setTimeout(() => { state.session = null; renderAuth(); renderApps(); }, Math.max(0, until - Date.now()));
  }
}

async function post(path, body) {
  const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}), credentials: 'same-origin' });
  let data = null;
  try { data = await res.json(); } catch { /* empty */ }
  return { ok: res.ok, status: res.status, data };
}

$('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  const r = await post('/ui/login', { token: $('token').value });
  $('token').value = '';
  if (!r.ok) return notice(`login failed: ${r.data?.error?.message ?? r.status}`, true);
  state.session = { tag: r.data.session, expires: r.data.expires };
  notice('');
  renderAuth();
  renderApps();
  if (!state.status) connect(); // the stream may have been refused before the login (remote viewer)
});

$('logout').addEventListener('click', async () => {
  await post('/ui/logout');
  state.session = null;
  renderAuth();
  renderApps();
});

async function act(app, action, body) {
  const card = cards.get(app);
  for (const b of Object.values(card.buttons)) b.disabled = true;
  const r = await post(`/apps/${encodeURIComponent(app)}/${action}`, body);
  if (r.ok) notice(`${action} ${app}: ${r.data?.name ?? ''} is ${r.data?.phase ?? 'done'}`);
  else {
    if (r.status === 401) { state.session = null; renderAuth(); }
    notice(`${action} ${app} refused: ${r.data?.error?.message ?? r.status}`, true);
  }
  renderApps();
}

// ---- apps -------------------------------------------------------------------------------------------------

function pct(x) {
  return `${Math.round(x * 1000) / 10}%`;
}

function renderApps() {
  const box = $('apps');
  const apps = state.status?.apps ?? [];
  const sc = $('sidecar');
  if (state.status) {
    sc.textContent = state.status.sidecarConnected ? 'sidecar connected' : 'sidecar not connected';
    sc.className = `pill ${state.status.sidecarConnected ? 'on' : 'off'}`;
  }
  if (apps.length === 0) {
    box.replaceChildren(h('p', { class: 'muted' }, state.status ? 'No apps yet: add an AppVersion.' : 'waiting for the controller…'));
    for (const c of cards.values()) destroyCharts(c);
    cards.clear();
    return;
  }
  const seen = new Set();
  for (const app of apps) {
    seen.add(app.app);
    let card = cards.get(app.app);
    if (!card) {
      card = createCard(app.app);
      cards.set(app.app, card);
    }
    updateCard(card, app);
  }
  for (const [name, c] of cards) if (!seen.has(name)) { destroyCharts(c); c.root.remove(); cards.delete(name); }
  const order = apps.map((a) => cards.get(a.app).root);
  if (order.some((el, i) => box.children[i] !== el) || box.children.length !== order.length) box.replaceChildren(...order);
}

function createCard(app) {
  const tip = state.readOnly ? 'read-only here: use kubectl molt' : 'log in to act';
  const buttons = {
    promote: h('button', { class: 'primary', type: 'button', 'data-action': 'promote', onclick: () => act(app, 'promote', { full: true }) }, 'Promote'),
    step: h('button', { type: 'button', disabled: true, title: ONE_STEP_TIP, 'data-action': 'promote-step', onclick: () => act(app, 'promote', { full: false }) }, 'Promote one step'),
    rollback: h('button', { class: 'danger', type: 'button', 'data-action': 'rollback', onclick: () => act(app, 'rollback') }, 'Roll back'),
  };
  buttons.promote.title = tip;
  const tbody = h('tbody');
  const hosts = h('span', { class: 'hosts' });
  const chartBoxes = { rps: h('div'), eps: h('div'), lat: h('div') };
  const root = h('article', { class: 'app', 'data-app': app },
    h('h2', {}, app, hosts, h('span', { class: 'actions' }, buttons.promote, buttons.step, buttons.rollback)),
    h('table', {},
      h('thead', {}, h('tr', {}, ['version', 'phase', 'traffic', 'requests', 'errors', 'mode', 'reason'].map((t) => h('th', {}, t)))),
      tbody),
    h('div', { class: 'charts' },
      h('div', { class: 'chart' }, h('h3', {}, 'requests / s'), chartBoxes.rps),
      h('div', { class: 'chart' }, h('h3', {}, 'errors / s'), chartBoxes.eps),
      h('div', { class: 'chart' }, h('h3', {}, 'mean latency (ms)'), chartBoxes.lat)));
  return { root, tbody, hosts, buttons, chartBoxes, charts: null, key: '' };
}

function updateCard(card, app) {
  card.hosts.textContent = app.hosts?.length ? app.hosts.join(', ') : '';
  const rows = app.versions.map((v) => h('tr', { 'data-version': v.name },
    h('td', {}, h('strong', {}, v.version), ' ', h('span', { class: 'muted' }, v.name)),
    h('td', {}, h('span', { class: `phase ${v.phase}` }, v.phase)),
    h('td', {}, h('span', { class: 'bar' }, h('span')), pct(v.traffic)),
    h('td', { class: 'num' }, v.requests),
    h('td', { class: 'num' }, v.errors),
    h('td', {}, v.mode),
    h('td', { class: 'why' }, [v.reason, v.message].filter(Boolean).join(': '))));
  // Bar widths through the CSSOM (the page's CSP allows no inline style attributes).
  rows.forEach((tr, i) => { tr.querySelector('.bar > span').style.width = pct(app.versions[i].traffic); });
  card.tbody.replaceChildren(...rows);

  const act = canAct();
  const tip = state.readOnly ? 'read-only here: use kubectl molt' : act ? '' : 'log in to act';
  card.buttons.promote.disabled = !act;
  card.buttons.rollback.disabled = !act;
  card.buttons.promote.title = tip || 'finish the transition: all new traffic to the newest serving version';
  card.buttons.rollback.title = tip || 'roll the newest serving version back now';
  card.buttons.promote.hidden = card.buttons.rollback.hidden = card.buttons.step.hidden = state.readOnly;
  // Canary analysis on the newest version and still gating: "promote one step" (past the current gate) and
  // "promote full" (skip the gates). Otherwise Promote finishes the transition as always.
  const a = app.versions[0]?.analysis;
  const gating = a && a.state !== 'Done' && a.state !== 'Stopped';
  card.buttons.step.disabled = !act || !gating;
  card.buttons.step.title = !gating ? ONE_STEP_TIP : tip || `past the current gate${a.step !== undefined ? ` (step ${a.step + 1} of ${a.steps})` : ''}; analysis keeps judging the next steps`;
  card.buttons.promote.textContent = gating ? 'Promote full' : 'Promote';
  if (gating && !tip) card.buttons.promote.title = 'finish the transition now: skip the remaining analysis gates';

  updateCharts(card, app);
}

function updateCharts(card, app) {
  const versions = app.versions.map((v) => v.name);
  const key = versions.join('\u0000');
  const xs = state.samples.map((s) => s.time / 1000);
  const series = (field) => [xs, ...versions.map((n) => state.samples.map((s) => s.versions[n]?.[field] ?? null))];
  if (card.key !== key || !card.charts) {
    destroyCharts(card);
    card.key = key;
    const width = Math.max(180, Math.floor((card.root.clientWidth || 900) / 3) - 16);
    const make = (field, box) => new uPlot({
      width, height: 110,
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{ size: 24, font: '10px system-ui' }, { size: 36, font: '10px system-ui' }],
      series: [{}, ...app.versions.map((v, i) => ({ label: v.version, stroke: COLORS[i % COLORS.length], width: 1.5 }))],
    }, series(field), box);
    card.charts = { rps: make('rps', card.chartBoxes.rps), eps: make('eps', card.chartBoxes.eps), lat: make('latencyMs', card.chartBoxes.lat) };
    return;
  }
  card.charts.rps.setData(series('rps'));
  card.charts.eps.setData(series('eps'));
  card.charts.lat.setData(series('latencyMs'));
}

function destroyCharts(card) {
  if (!card.charts) return;
  for (const c of Object.values(card.charts)) c.destroy();
  card.charts = null;
}

// ---- timeline ---------------------------------------------------------------------------------------------

function eventItem(ev) {
  const t = new Date(ev.time);
  return h('li', { 'data-kind': ev.kind, 'data-app': ev.app, 'data-version': ev.version },
    h('time', { datetime: t.toISOString() }, t.toLocaleTimeString()),
    h('span', { class: `kind ${ev.kind}` }, ev.kind), ' ',
    ev.app ? h('strong', {}, ev.app) : null, ev.version ? ` ${ev.version}` : '', ev.app || ev.version ? ': ' : '',
    ev.message, ' ', h('span', { class: 'actor' }, `— ${ev.actor}`));
}

function renderTimeline() {
  const items = state.events.slice(-MAX_TIMELINE).reverse().map(eventItem);
  $('timeline').replaceChildren(...items);
}

function prependEvent(ev) {
  const list = $('timeline');
  list.prepend(eventItem(ev));
  while (list.children.length > MAX_TIMELINE) list.lastChild.remove();
}

renderAuth();
connect();
