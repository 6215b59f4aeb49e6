// tidemark console: plain DOM, no framework, no build step.
//
// Every value that comes from the server (table names, cell values, error
// messages) reaches the page as text: through text nodes or textContent, never
// as HTML. The Content-Security-Policy allows this file and app.css only.
'use strict';

const PAGE_ROWS = 100;

const state = {
  me: null, // { user, role, admin, csrf } once signed in
  sql: 'SELECT * FROM invoicing.invoices LIMIT 100',
  query: null, // { id, sql, asOf, offset, done } of the result on show
  asOf: '', // the editor's "as of" (an ISO instant), '' for now
  chart: null, // { kind, x, y } chosen in the editor, or opened from a saved chart
};

const $ = (sel) => document.querySelector(sel);

// An element with attributes and children; strings become text nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v || ''; // null: no class (not the class "null")
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, '');
    else if (v !== false && v != null) e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c == null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class ApiError extends Error {
  constructor(message, status, sqlstate) {
    super(message);
    this.status = status;
    this.sqlstate = sqlstate;
  }
}

// One call to the console's API (relative to /console/). State-changing calls
// carry the session's CSRF token.
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && state.me) headers['X-CSRF-Token'] = state.me.csrf;
  const r = await fetch('api/' + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  let data = null;
  try {
    data = await r.json();
  } catch (_) {
    // Not JSON: the status says what happened.
  }
  if (!r.ok) {
    throw new ApiError((data && data.error) || r.status + ' ' + r.statusText, r.status, data && data.sqlstate);
  }
  return data;
}

// Show an error where it belongs; a lost session goes back to sign-in.
function showError(e, target) {
  if (e instanceof ApiError && e.status === 401 && state.me) {
    signedOut(e.message);
    return;
  }
  const text = e.sqlstate ? e.message + ' (SQLSTATE ' + e.sqlstate + ')' : e.message;
  if (target) target.textContent = text;
}

// ---------------------------------------------------------------- sign-in

function signedOut(message) {
  // Pages shown after a sign-in are timed from the click, not from navigation.
  firstRoute = false;
  state.me = null;
  state.query = null;
  $('#top').hidden = true;
  $('#view').replaceChildren();
  $('#login').hidden = false;
  $('#login-error').textContent = message || '';
  $('#login-password').value = '';
  $('#login-user').focus();
}

function signedIn(me) {
  state.me = me;
  $('#login').hidden = true;
  $('#top').hidden = false;
  $('#who').textContent = me.user + ' (' + me.role + ')';
  route();
}

async function onLogin(ev) {
  ev.preventDefault();
  const button = $('#login-submit');
  button.disabled = true;
  $('#login-error').textContent = '';
  try {
    const me = await api('POST', 'login', {
      user: $('#login-user').value,
      password: $('#login-password').value,
    });
    $('#login-password').value = '';
    signedIn(me);
  } catch (e) {
    $('#login-error').textContent = e.message;
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  try {
    await api('POST', 'logout');
  } catch (_) {
    // Signed out either way.
  }
  signedOut('Signed out.');
}

// ---------------------------------------------------------------- pages

const PAGES = {
  health: renderHealth,
  catalog: renderCatalog,
  table: renderTable,
  sql: renderSql,
  dashboards: renderDashboards,
  dashboard: renderDashboard,
  models: renderModels,
  features: renderFeatures,
};
let firstRoute = true;
let routes = 0; // pages shown so far: a page left before it finished is not timed
// Pages reached from another page's links, and the nav entry they belong under.
const NAV_OF = { table: 'catalog', dashboard: 'dashboards' };

function route() {
  if (!state.me) return;
  const [name, ...rest] = (location.hash.replace(/^#\//, '') || 'health').split('/');
  const page = PAGES[name] ? name : 'health';
  const arg = decodeURIComponent(rest.join('/'));
  for (const a of document.querySelectorAll('nav a')) {
    a.classList.toggle('active', a.id === 'nav-' + (NAV_OF[page] || page));
  }
  // Leaving the editor closes its open result on the server.
  if (page !== 'sql') closeShown();
  const view = $('#view');
  view.dataset.page = page;
  delete view.dataset.loaded;
  // How long the page took to show everything it draws (the browser test and
  // bench/console.sh read these measures): for the first page of a document from
  // the navigation's start (assets, session check and all), then from the click.
  const t0 = firstRoute ? 0 : performance.now();
  firstRoute = false;
  const mine = ++routes;
  const done = () => {
    if (mine !== routes) return;
    performance.measure('tidemark:' + page, { start: t0, end: performance.now() });
    view.dataset.loaded = page;
  };
  // Each page draws into a container of its own: a page left before its data
  // came back then writes into a detached element, never over the next page.
  const box = el('div', { class: 'page' });
  view.replaceChildren(box);
  PAGES[page](box, arg).then(done, (e) => {
    const p = el('p', { class: 'error', id: 'page-error' });
    box.append(p);
    showError(e, p);
    done();
  });
}

// A table of text cells; null shows as NULL.
function grid(columns, rows, attrs) {
  const head = el('tr', {}, columns.map((c) => el('th', { title: c.type || null }, c.name || c)));
  const body = rows.map((row) =>
    el('tr', {}, row.map((v) => (v === null ? el('td', {}, el('span', { class: 'null' }, 'NULL')) : el('td', { title: v.length > 40 ? v : null }, v)))),
  );
  return el('table', Object.assign({ class: 'grid' }, attrs || {}), el('thead', {}, head), el('tbody', {}, body));
}

function freshness(behind) {
  const s = Number(behind);
  if (behind === '-' || Number.isNaN(s)) return 'muted';
  if (s < 60) return 'ok';
  if (s < 3600) return 'warn';
  return 'bad';
}

async function renderHealth(view) {
  view.replaceChildren(el('h2', {}, 'Health'), el('p', { class: 'muted' }, 'Loading…'));
  const h = await api('GET', 'health');
  const parts = [el('h2', {}, 'Health')];
  if (h.parked.length) {
    parts.push(
      el('section', { id: 'parked' },
        el('h3', {}, 'Parked tables'),
        h.parked.map((p) =>
          el('div', { class: 'card warn' },
            el('strong', {}, p.table),
            el('p', {}, p.reason),
            el('p', { class: 'muted' }, 'Way out: ' + p.way_out))),
      ),
    );
  }
  parts.push(el('h3', {}, 'Tables'));
  if (!h.tables.length) {
    parts.push(el('p', { class: 'muted' }, 'No landed table your role reads.'));
  } else {
    const cols = ['Table', 'State', 'Position', 'Last source change', 'Landed', 'Delay (s)', 'Behind (s)'];
    const table = grid(cols, h.tables.map((t) => [t.table, t.state, t.position, t.last_source_ts, t.landed, t.delay_s, t.behind_s]), { id: 'health-tables' });
    // Colour how far behind each table is.
    table.querySelectorAll('tbody tr').forEach((tr, i) => {
      tr.lastChild.className = freshness(h.tables[i].behind_s);
      if (h.tables[i].parked) tr.children[1].className = 'bad';
    });
    parts.push(el('div', { class: 'scroll' }, table));
  }
  const throughput = el('div', { id: 'throughput', class: 'chart' });
  parts.push(el('h3', {}, 'Changes landed per minute, last 6 hours'), throughput);
  const compactions = el('div', { id: 'compactions' });
  parts.push(el('h3', {}, 'Compactions (the change log folded into the current base)'), compactions);
  parts.push(el('h3', {}, 'Jobs'));
  if (!h.daemon) {
    parts.push(el('p', { class: 'muted', id: 'jobs' }, 'No daemon serves this console (tidemark console alone): jobs, their runs and their triggers are shown when `tidemark run` serves it ([console] daemon = true).'));
  } else if (!h.jobs) {
    parts.push(el('p', { class: 'muted', id: 'jobs' }, 'Jobs are shown to admin roles.'));
  } else if (!h.jobs.length) {
    parts.push(el('p', { class: 'muted', id: 'jobs' }, 'No [jobs.*] configured.'));
  } else {
    parts.push(jobsTable(h.jobs));
  }
  if (h.dead_letters) {
    const d = h.dead_letters;
    parts.push(el('h3', {}, 'Dead letters'));
    if (!d.by_table.length) {
      parts.push(el('p', { class: 'muted', id: 'dead-letters' }, 'None.'));
    } else {
      parts.push(
        grid(['Stream', 'Table', 'Dead letters', 'Newest'], d.by_table, { id: 'dead-letters' }),
        el('h3', {}, 'Newest'),
        el('div', { class: 'scroll' }, grid(['Received', 'Stream', 'Table', 'Topic', 'Partition', 'Offset', 'Error'], d.recent)),
      );
    }
  }
  view.replaceChildren(...parts);
  await Promise.all([drawThroughput(throughput), listCompactions(compactions)]);
}

async function listCompactions(box) {
  try {
    const list = await api('GET', 'health/compactions');
    box.replaceChildren(list.length
      ? el('div', { class: 'scroll' }, grid(['Table', 'When', 'Rows in the base'],
        list.map((c) => [c.table, c.at_ms ? new Date(c.at_ms).toISOString() : '-', c.rows == null ? '-' : String(c.rows)])))
      : el('p', { class: 'muted' }, 'None among the newest commits of your tables.'));
  } catch (e) {
    const p = el('p', { class: 'error' });
    box.replaceChildren(p);
    showError(e, p);
  }
}

function jobsTable(jobs) {
  const rows = jobs.map((j) => {
    const last = j.last;
    const trigger = el('button', { type: 'button', class: 'job-trigger', 'data-job': j.name }, 'Run now');
    const out = el('span', { class: 'muted' });
    trigger.addEventListener('click', async () => {
      trigger.disabled = true;
      try {
        const r = await api('POST', 'jobs/' + encodeURIComponent(j.name) + '/runs');
        out.textContent = ' ' + r.run;
      } catch (e) {
        showError(e, out);
      } finally {
        trigger.disabled = false;
      }
    });
    const outcome = last ? last.outcome + (last.error ? ': ' + last.error : '') : '-';
    return el('tr', {},
      el('td', {}, j.name), el('td', {}, j.kind), el('td', {}, j.triggers.join('; ')),
      el('td', { class: last && last.outcome === 'failed' ? 'bad' : null }, outcome),
      el('td', {}, last ? (last.ended || last.started) : '-'),
      el('td', {}, j.running || (j.paused_by_error ? 'paused by an error' : j.next_due || '-')),
      el('td', {}, trigger, out));
  });
  const head = ['Job', 'Kind', 'Triggers', 'Last outcome', 'Last run', 'Running / next', ''].map((c) => el('th', {}, c));
  return el('div', { class: 'scroll' }, el('table', { class: 'grid', id: 'jobs' }, el('thead', {}, el('tr', {}, head)), el('tbody', {}, rows)));
}

async function drawThroughput(box) {
  try {
    const t = await api('GET', 'health/throughput?hours=6');
    if (!t.points.length) {
      box.replaceChildren(el('p', { class: 'muted' }, 'Nothing landed in the last ' + t.hours + ' hours in the ' + t.tables + ' tables your role reads.'));
      return;
    }
    // Every minute of the window, quiet ones as 0, so the axis is the window;
    // instants as text, as query results come, so one drawing path serves all.
    const counts = new Map(t.points);
    const step = t.bucket_s;
    const end = Math.floor(Date.now() / 1000 / step) * step;
    const rows = [];
    for (let s = end - t.hours * 3600; s <= end; s += step) {
      rows.push([new Date(s * 1000).toISOString(), String(counts.get(s) || 0)]);
    }
    drawChart(box, { kind: 'bar', x: 'minute', y: ['changes'], height: 220 }, { columns: ['minute', 'changes'], rows });
  } catch (e) {
    const p = el('p', { class: 'error' });
    box.replaceChildren(p);
    showError(e, p);
  }
}

// A name as SQL needs it: quoted unless plain lower snake_case.
function ident(name) {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : '"' + name.replace(/"/g, '""') + '"';
}

// A table's size and history as the listing shows them: from the Delta log's
// statistics (no row read), absent where the role reads the table through a row
// filter. Rows are approximate (≈) while changes since the last compaction wait to
// be merged.
function tableFacts(t) {
  const parts = [];
  const n = (x) => Number(x).toLocaleString('en');
  if (t.rows !== undefined) parts.push((t.rows_exact ? '' : '≈ ') + n(t.rows) + ' rows');
  if (t.changes !== undefined) parts.push(n(t.changes) + ' changes');
  if (t.history_from) parts.push('history from ' + t.history_from.slice(0, 10));
  return parts.length ? ', ' + parts.join(', ') : '';
}

async function renderCatalog(view) {
  view.replaceChildren(el('h2', {}, 'Catalog'), el('p', { class: 'muted' }, 'Loading…'));
  const c = await api('GET', 'catalog');
  const search = el('input', { id: 'catalog-search', type: 'search', placeholder: 'Search tables and columns' });
  const list = el('div', { id: 'catalog' });
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const sections = [];
    for (const s of c.schemas) {
      const tables = s.tables.filter((t) =>
        !q || (s.name + '.' + t.name).toLowerCase().includes(q) || t.columns.some((col) => col.name.toLowerCase().includes(q)));
      if (!tables.length) continue;
      sections.push(
        el('section', { class: 'schema' },
          el('h3', {}, s.name),
          tables.map((t) => {
            const full = s.name + '.' + t.name;
            return el('details', { class: 'table', 'data-table': full },
              el('summary', {}, t.name, el('span', { class: 'muted' }, ' · ' + t.kind + ', ' + t.columns.length + ' columns' + tableFacts(t))),
              grid(['Column', 'Type', 'Nullable'], t.columns.map((col) => [col.name, col.type, col.nullable ? 'yes' : 'no'])),
              el('div', { class: 'toolbar' },
                el('button', { type: 'button', onclick: () => openInEditor('SELECT * FROM ' + ident(s.name) + '.' + ident(t.name) + ' LIMIT 100') }, 'Query'),
                el('a', { class: 'table-link', href: '#/table/' + encodeURIComponent(full) }, 'Table page')));
          })),
      );
    }
    list.replaceChildren(...(sections.length ? sections : [el('p', { class: 'muted' }, 'No table matches.')]));
  };
  search.addEventListener('input', draw);
  draw();
  view.replaceChildren(el('h2', {}, 'Catalog'), search, list);
}

function openInEditor(sql, chart) {
  state.sql = sql;
  state.chart = chart || null;
  location.hash = '#/sql';
}

// The whole (small) result of a statement, as the signed-in user: through the
// chart-data API, which reads at most 10,000 rows.
async function resultOf(sql, asOf) {
  const d = await api('POST', 'chart-data', { sql, as_of: asOf || undefined });
  if (d.now.error) throw new ApiError(d.now.error.message, 400, d.now.error.sqlstate);
  return d.now;
}

// A table's page: its columns, rows now, how far its history goes back, and its
// changes per day as a chart. Every figure is a statement run as the user.
async function renderTable(view, full) {
  const c = await api('GET', 'catalog');
  const dot = full.indexOf('.');
  const [schema, name] = [full.slice(0, dot), full.slice(dot + 1)];
  const s = c.schemas.find((x) => x.name === schema);
  const t = s && s.tables.find((x) => x.name === name);
  if (!t) throw new Error('No table ' + full + ' in your catalog.');
  const q = ident(schema) + '.' + ident(name);
  const histSchema = schema + '_history';
  const h = c.schemas.find((x) => x.name === histSchema);
  const hasHistory = !!(h && h.tables.some((x) => x.name === name));
  const hq = ident(histSchema) + '.' + ident(name);
  const facts = el('dl', { id: 'table-facts', class: 'facts' });
  const chart = el('div', { id: 'table-changes', class: 'chart' });
  view.replaceChildren(
    el('h2', {}, full),
    el('div', { class: 'toolbar' },
      el('button', { type: 'button', onclick: () => openInEditor('SELECT * FROM ' + q + ' LIMIT 100') }, 'Query'),
      hasHistory ? el('button', { type: 'button', onclick: () => openInEditor('SELECT * FROM ' + hq + ' ORDER BY _valid_from DESC LIMIT 100') }, 'Query its history') : null),
    facts,
    hasHistory ? el('h3', {}, 'Changes per day (by source instant)') : null,
    hasHistory ? chart : null,
    el('h3', {}, 'Columns'),
    grid(['Column', 'Type', 'Nullable'], t.columns.map((col) => [col.name, col.type, col.nullable ? 'yes' : 'no'])));
  const fact = (k, v) => facts.append(el('dt', {}, k), el('dd', {}, v));
  const work = [resultOf('SELECT count(*) AS n FROM ' + q).then((r) => fact('Rows', r.rows[0][0]))];
  if (hasHistory) {
    // One pass over the history: changes per day, whose sum is the versions and
    // whose first day's earliest instant is how far back the history goes.
    const daily = 'SELECT date_trunc(\'day\', _valid_from) AS day, count(*) AS changes, min(_valid_from) AS oldest FROM ' + hq + ' GROUP BY 1 ORDER BY 1';
    work.push(resultOf(daily).then((r) => {
      const versions = r.rows.reduce((n, row) => n + Number(row[1]), 0);
      fact('Versions in its history', String(versions));
      fact('History goes back to', r.rows.length ? r.rows[0][2] : '-');
      if (r.rows.length) drawChart(chart, { kind: 'bar', x: 'day', y: ['changes'], height: 240 }, r);
      else chart.replaceChildren(el('p', { class: 'muted' }, 'No changes.'));
    }));
  }
  const errors = el('p', { class: 'error' });
  view.append(errors);
  await Promise.all(work.map((p) => p.catch((e) => showError(e, errors))));
}

// ---------------------------------------------------------------- SQL editor

function newId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return 'q' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

async function renderSql(view) {
  const text = el('textarea', { id: 'sql-text', spellcheck: 'false', rows: 8 });
  text.value = state.sql;
  text.addEventListener('input', () => { state.sql = text.value; });
  text.addEventListener('keydown', (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === 'Enter') {
      ev.preventDefault();
      run(text.value);
    }
  });
  const toolbar = el('div', { class: 'toolbar' },
    el('button', { id: 'sql-run', class: 'primary', type: 'button', onclick: () => run(text.value) }, 'Run'),
    el('button', { id: 'sql-explain', type: 'button', onclick: () => run('EXPLAIN ' + text.value) }, 'Explain'),
    el('button', { id: 'sql-cancel', type: 'button', disabled: true, onclick: cancel }, 'Cancel'),
    el('button', { id: 'sql-csv', type: 'button', onclick: () => downloadCsv(text.value) }, 'Download CSV'),
    el('span', { id: 'sql-status', class: 'muted' }));
  view.replaceChildren(
    el('h2', {}, 'SQL'),
    text,
    asOfControl(),
    toolbar,
    el('p', { id: 'sql-error', class: 'error', role: 'alert' }),
    el('div', { id: 'sql-result' }),
    el('div', { class: 'toolbar' },
      el('button', { id: 'sql-next', type: 'button', disabled: true, onclick: nextPage }, 'Next ' + PAGE_ROWS + ' rows')),
    el('section', { id: 'chart-panel', hidden: true }));
  text.focus();
}

// A datetime-local value (the browser's local time) as an ISO instant, and back.
function isoOf(local) {
  return local ? new Date(local).toISOString() : '';
}
function localOf(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, '0');
  return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
}

// The editor's "as of": the server reads every landed table the statement names
// (schema.table, without an AS OF of its own) as of this instant.
function asOfControl() {
  const input = el('input', { id: 'sql-asof', type: 'datetime-local', step: 1, value: localOf(state.asOf) });
  input.addEventListener('change', () => { state.asOf = isoOf(input.value); });
  const now = el('button', { id: 'sql-asof-now', type: 'button' }, 'Now');
  now.addEventListener('click', () => { input.value = ''; state.asOf = ''; });
  return el('div', { class: 'toolbar' },
    el('label', {}, 'As of ', input), now,
    el('span', { class: 'muted' }, 'empty: now; the tables are read as they were at that instant (history you may read only)'));
}

function busy(on) {
  // The editor may have been left meanwhile.
  if (!$('#sql-run')) return;
  $('#sql-run').disabled = on;
  $('#sql-explain').disabled = on;
  $('#sql-cancel').disabled = !on;
  if (on) $('#sql-next').disabled = true;
}

async function closeShown() {
  const q = state.query;
  state.query = null;
  if (q && !q.done) {
    try {
      await api('DELETE', 'queries/' + q.id);
    } catch (_) {
      // Closed or expired already.
    }
  }
}

async function run(sql) {
  await closeShown();
  const q = { id: newId(), sql, asOf: state.asOf, offset: 0, done: false };
  state.query = q;
  busy(true);
  $('#sql-error').textContent = '';
  $('#sql-status').textContent = 'Running…';
  const t0 = performance.now();
  try {
    const page = await api('POST', 'queries', { id: q.id, sql, page_rows: PAGE_ROWS, as_of: q.asOf || undefined });
    if (state.query === q) {
      show(page, performance.now() - t0);
      chartPanel(q, page);
    }
  } catch (e) {
    if (state.query === q) {
      state.query = null;
      $('#sql-status').textContent = '';
      showError(e, $('#sql-error'));
    }
  } finally {
    busy(false);
    if (state.query === q && !q.done) $('#sql-next').disabled = false;
  }
}

async function nextPage() {
  const q = state.query;
  if (!q || q.done) return;
  busy(true);
  const t0 = performance.now();
  try {
    const page = await api('POST', 'queries/' + q.id + '/next', { page_rows: PAGE_ROWS });
    if (state.query === q) show(page, performance.now() - t0);
  } catch (e) {
    showError(e, $('#sql-error'));
    state.query = null;
  } finally {
    busy(false);
    if (state.query === q && !q.done) $('#sql-next').disabled = false;
  }
}

async function cancel() {
  const q = state.query;
  if (!q) return;
  try {
    await api('DELETE', 'queries/' + q.id);
  } catch (e) {
    showError(e, $('#sql-error'));
  }
}

// One page replaces the last: the browser never holds more than a page.
function show(page, ms) {
  const q = state.query;
  q.done = page.done;
  q.offset = page.offset;
  const explain = page.columns.length === 2 && page.columns[0].name === 'plan_type';
  const table = grid(page.columns, page.rows, { id: 'grid', class: explain ? 'grid explain' : 'grid' });
  $('#sql-result').replaceChildren(el('div', { class: 'scroll' }, table));
  const shown = page.rows.length
    ? 'Rows ' + (page.offset + 1) + '–' + (page.offset + page.rows.length)
    : page.offset ? 'No more rows' : 'No rows';
  const at = q.asOf ? ' · as of ' + q.asOf : '';
  $('#sql-status').textContent = shown + (page.done ? ' (end)' : '') + at + ' · ' + Math.round(ms) + ' ms';
}

// Chart the result on show: pick a kind, the x column and y columns, draw it (the
// statement runs again for up to 10,000 rows), optionally over the same statement
// N days earlier; save it with its query.
function chartPanel(q, page) {
  const panel = $('#chart-panel');
  const explain = page.columns.length === 2 && page.columns[0].name === 'plan_type';
  panel.hidden = explain || page.columns.length < 2;
  if (panel.hidden) return;
  const names = page.columns.map((c) => c.name);
  const numeric = names.filter((n, i) => page.rows.length && page.rows.every((r) => r[i] === null || numberOf(r[i]) !== null));
  // The chart chosen for this very statement (saved, or opened from a dashboard):
  // its settings, and Save makes a new revision of it when the user may.
  const prior = state.chart && state.chart.sql === q.sql && names.includes(state.chart.x) ? state.chart : null;
  const x0 = prior ? prior.x : names[0];
  const y0 = prior ? prior.y.filter((y) => names.includes(y)) : numeric.filter((n) => n !== x0).slice(0, 3);
  const kind = el('select', { id: 'chart-kind' }, ['line', 'bar', 'area'].map((k) => el('option', { value: k, selected: prior && prior.kind === k }, k)));
  const x = el('select', { id: 'chart-x' }, names.map((n) => el('option', { value: n, selected: n === x0 }, n)));
  const ys = el('span', { id: 'chart-y' }, names.map((n) =>
    el('label', { class: 'check' }, el('input', { type: 'checkbox', class: 'chart-y', value: n, checked: y0.includes(n) }), n)));
  const compare = el('input', { id: 'chart-compare', type: 'checkbox' });
  const days = el('input', { id: 'chart-compare-days', type: 'number', min: 1, max: 3650, value: 30, class: 'narrow' });
  const box = el('div', { id: 'chart-box', class: 'chart' });
  const msg = el('p', { id: 'chart-msg', class: 'muted' });
  const name = el('input', { id: 'chart-name', placeholder: 'Chart name', value: (prior && prior.name) || '' });
  const spec = () => ({
    kind: kind.value,
    x: x.value,
    y: [...ys.querySelectorAll('input:checked')].map((i) => i.value).filter((v) => v !== x.value),
  });
  const draw = async () => {
    const sp = spec();
    if (!sp.y.length) { msg.textContent = 'Pick at least one y column.'; return; }
    msg.textContent = 'Drawing…';
    try {
      const when = compare.checked ? compareInstants(q.asOf, Number(days.value)) : { asOf: q.asOf };
      const d = await api('POST', 'chart-data', { sql: q.sql, as_of: when.asOf || undefined, compare_as_of: when.compareAsOf });
      if (d.now.error) throw new ApiError(d.now.error.message, 400, d.now.error.sqlstate);
      if (d.compare && d.compare.error) throw new ApiError(d.compare.error.message, 400, d.compare.error.sqlstate);
      Object.assign(sp, when.labels);
      drawChart(box, sp, d.now, d.compare);
      msg.textContent = d.now.rows.length + ' rows' + (d.now.truncated ? ' (the first 10,000)' : '') + (d.compare ? '; dashed: ' + when.labels.compareLabel.trim() : '');
    } catch (e) {
      showError(e, msg);
    }
  };
  const save = async () => {
    const sp = spec();
    try {
      const body = Object.assign({ name: name.value, sql: q.sql }, sp);
      if (prior && prior.id && prior.editable) body.id = prior.id;
      const c = await api('POST', 'charts', body);
      state.chart = Object.assign({}, sp, { id: c.id, name: c.name, sql: q.sql, editable: true });
      msg.textContent = 'Saved chart “' + c.name + '”. Put it on a dashboard from the Dashboards page.';
    } catch (e) {
      showError(e, msg);
    }
  };
  panel.replaceChildren(
    el('h3', {}, 'Chart'),
    el('div', { class: 'toolbar' },
      el('label', {}, 'Kind ', kind), el('label', {}, 'x ', x), el('span', {}, 'y '), ys),
    el('div', { class: 'toolbar' },
      el('label', { class: 'check' }, compare, 'compare with'), days, el('span', {}, 'days earlier'),
      el('button', { id: 'chart-draw', type: 'button', class: 'primary', onclick: draw }, 'Draw'),
      name, el('button', { id: 'chart-save', type: 'button', onclick: save }, prior && prior.editable ? 'Save' : 'Save chart')),
    msg, box);
  // A chart chosen before is drawn at once; otherwise on Draw (it runs the
  // statement again, for up to 10,000 rows).
  if (prior && y0.length) draw();
}

// An instant `ms` (ms since 1970) taken down to its minute, as ISO: instants
// counted back from now are whole minutes (what the labels show), so a chart opened
// again within the minute asks for the same instant and the server can answer from
// the result it kept for it.
function minuteOf(ms) {
  return new Date(Math.floor(ms / 60000) * 60000).toISOString();
}

// The instants of a chart and of its comparison N days earlier, with their labels.
function compareInstants(asOf, days) {
  const base = asOf ? new Date(asOf) : new Date();
  const then = minuteOf(base.getTime() - days * 86400000);
  return {
    asOf,
    compareAsOf: then,
    labels: { nowLabel: asOf ? ' (as of ' + asOf.slice(0, 10) + ')' : ' (now)', compareLabel: ' (' + days + ' days earlier)' },
  };
}

// The whole result as a file: a form post, so the browser streams it to disk.
function downloadCsv(sql) {
  const form = el('form', { method: 'post', action: 'api/csv' },
    el('input', { type: 'hidden', name: 'sql', value: sql }),
    el('input', { type: 'hidden', name: 'csrf', value: state.me.csrf }),
    el('input', { type: 'hidden', name: 'as_of', value: state.asOf }));
  document.body.append(form);
  form.submit();
  form.remove();
}

// ---------------------------------------------------------------- models and features

const SVG_NS = 'http://www.w3.org/2000/svg';

// An SVG element with attributes and children; strings become text nodes.
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v != null) e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c == null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// An instant in ms since 1970 as the pages show instants (UTC, to the second).
function whenOf(ms) {
  return ms == null ? '-' : new Date(ms).toISOString().slice(0, 19).replace('T', ' ') + ' UTC';
}

function tablePage(full) {
  return '#/table/' + encodeURIComponent(full);
}

const DAG = { w: 200, h: 30, gapX: 70, gapY: 14, pad: 10 };
const HIDDEN_NODE = 'tables you cannot read';

// The models' DAG: one column per layer (tables that are not models on the left,
// each model one column right of its deepest input), boxes linked by arrows from
// input to reader. Within a column, nodes sit in the mean order of their inputs,
// which keeps most arrows short and uncrossed.
function dagSvg(m) {
  const nodes = new Map(); // key -> { key, label, layer, href, kind, inputs }
  for (const t of m.tables) nodes.set('t:' + t, { key: 't:' + t, label: t, layer: 0, href: tablePage(t), kind: 'source', inputs: [] });
  if (m.reads_hidden) nodes.set('hidden', { key: 'hidden', label: HIDDEN_NODE, layer: 0, href: null, kind: 'hidden', inputs: [] });
  for (const x of m.models) {
    const inputs = x.reads.map((r) => (r.model ? 'm:' + r.model : 't:' + r.table));
    if (x.hidden_reads) inputs.push('hidden');
    nodes.set('m:' + x.name, { key: 'm:' + x.name, label: x.name, layer: x.layer, href: tablePage(x.table), kind: x.materialized === 'view' ? 'model view' : 'model', inputs });
  }
  const columns = [];
  for (const n of nodes.values()) (columns[n.layer] = columns[n.layer] || []).push(n);
  // A layer may be empty (no table on the left when every input is a model).
  for (let i = 0; i < columns.length; i++) columns[i] = columns[i] || [];
  const row = new Map();
  columns.forEach((col, layer) => {
    if (layer > 0) {
      const mean = (n) => {
        const at = n.inputs.map((k) => row.get(k)).filter((r) => r !== undefined);
        return at.length ? at.reduce((a, b) => a + b, 0) / at.length : 0;
      };
      col.sort((a, b) => mean(a) - mean(b) || a.label.localeCompare(b.label));
    }
    col.forEach((n, i) => row.set(n.key, i));
  });
  const x = (n) => DAG.pad + n.layer * (DAG.w + DAG.gapX);
  const y = (n) => DAG.pad + row.get(n.key) * (DAG.h + DAG.gapY);
  const width = DAG.pad * 2 + columns.length * DAG.w + Math.max(0, columns.length - 1) * DAG.gapX;
  const height = DAG.pad * 2 + Math.max(1, ...columns.map((c) => c.length)) * (DAG.h + DAG.gapY) - DAG.gapY;
  const arrows = [];
  for (const n of nodes.values()) {
    for (const k of n.inputs) {
      const from = nodes.get(k);
      if (!from) continue;
      const [x1, y1, x2, y2] = [x(from) + DAG.w, y(from) + DAG.h / 2, x(n), y(n) + DAG.h / 2];
      const bend = (x2 - x1) / 2;
      arrows.push(svg('path', { class: 'dag-edge', d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2 - 2},${y2}`, 'marker-end': 'url(#dag-arrow)' }));
    }
  }
  const boxes = [...nodes.values()].map((n) => {
    const label = n.label.length > 28 ? n.label.slice(0, 27) + '…' : n.label;
    const g = svg('g', { class: 'dag-node ' + n.kind, 'data-node': n.label },
      svg('title', {}, n.label),
      svg('rect', { x: x(n), y: y(n), width: DAG.w, height: DAG.h, rx: 4 }),
      svg('text', { x: x(n) + 8, y: y(n) + DAG.h / 2 + 4 }, label));
    return n.href ? svg('a', { href: n.href }, g) : g;
  });
  const defs = svg('defs', {},
    svg('marker', { id: 'dag-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'dag-arrowhead' })));
  return svg('svg', { id: 'dag', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Models and the tables they read' }, defs, arrows, boxes);
}

function lastBuildText(x) {
  if (x.materialized === 'view') {
    return { current: 'view defined', changed: 'view defined from older SQL: build to replace it', undefined: 'view not defined yet: build it' }[x.view] || '-';
  }
  const b = x.last_build;
  if (!b) return x.built ? 'no build recorded' : 'not built yet';
  return 'build ' + b.build + ', ' + whenOf(b.at_ms) + (b.version == null ? '' : ', version ' + b.version) +
    (b.sql_changed ? ' (its SQL changed since: the next build rebuilds it whole)' : '');
}

function inputsText(b) {
  if (!b) return '-';
  const parts = b.inputs.map((i) => i.table + ' v' + i.version);
  if (b.hidden_inputs) parts.push(b.hidden_inputs + ' ' + (b.hidden_inputs === 1 ? 'table' : 'tables') + ' you cannot read');
  return parts.join(', ') || '-';
}

// A test's last run (tidemark.model_tests): its outcome, when, and the first
// failing rows when the role is shown them.
function lastTestParts(t) {
  const l = t.last;
  if (!l) return [el('span', { class: 'muted' }, ' (no run recorded)')];
  const cls = l.outcome === 'pass' ? 'ok' : (l.outcome === 'fail' && t.severity === 'warn' ? 'warn' : 'bad');
  const what = l.outcome === 'fail' ? 'fail, ' + l.failing_rows + ' failing ' + (l.failing_rows === 1 ? 'row' : 'rows') : l.outcome;
  const parts = [' ', el('span', { class: 'test-outcome ' + cls, 'data-outcome': l.outcome }, what), el('span', { class: 'muted' }, ' ' + whenOf(l.at_ms) + (l.ran_by ? ' by ' + l.ran_by : ''))];
  if (l.error) parts.push(el('pre', { class: 'error' }, l.error));
  if (l.rows) parts.push(el('pre', { class: 'test-rows' }, l.rows.join('\n')));
  else if (l.rows_withheld) parts.push(el('div', { class: 'muted' }, 'Failing rows are not shown to your role.'));
  return parts;
}

function testsCell(x) {
  if (x.tests_error) return el('span', { class: 'bad' }, x.tests_error);
  const items = x.tests.map((t) => el('li', { title: t.kind + ', severity ' + t.severity, 'data-test': t.name }, t.name + (t.severity === 'warn' ? ' (warn)' : ''), ...lastTestParts(t)));
  for (const u of x.unit_tests) items.push(el('li', { title: 'unit test' }, 'unit: ' + u));
  return items.length ? el('ul', { class: 'plain tests' }, items) : '-';
}

async function renderModels(view) {
  view.replaceChildren(el('h2', {}, 'Models'), el('p', { class: 'muted' }, 'Loading…'));
  const m = await api('GET', 'models');
  const parts = [el('h2', {}, 'Models')];
  if (m.dir) parts.push(el('p', { class: 'muted' }, 'From ' + m.dir + ' ([models] path), as tidemark build reads it.'));
  if (!m.configured) {
    parts.push(el('p', { class: 'muted', id: 'models' }, 'This console knows no models directory.'));
  } else if (m.error) {
    parts.push(el('p', { class: 'error', id: 'models' }, m.error));
  } else if (!m.models.length) {
    parts.push(el('p', { class: 'muted', id: 'models' }, 'No model whose table your role reads.'));
  } else {
    parts.push(el('div', { class: 'dag' }, dagSvg(m)));
    const rows = m.models.map((x) => el('tr', { 'data-model': x.name },
      el('td', {}, el('a', { class: 'table-link', href: tablePage(x.table) }, x.name), el('div', { class: 'muted' }, x.table)),
      el('td', {}, x.materialized + (x.strategy ? ' (' + x.strategy + ')' : '')),
      el('td', {}, x.description || ''),
      el('td', {}, x.reads.map((r) => r.model || r.table).concat(x.hidden_reads ? [x.hidden_reads + ' you cannot read'] : []).join(', ') || '-'),
      el('td', { class: x.last_build && x.last_build.sql_changed ? 'warn' : null }, lastBuildText(x)),
      el('td', {}, inputsText(x.last_build)),
      el('td', {}, testsCell(x)),
      el('td', {}, x.tags.join(', '))));
    const head = ['Model', 'Materialised', 'What it is', 'Reads', 'Last build', 'Inputs it read', 'Tests', 'Tags'].map((c) => el('th', {}, c));
    parts.push(el('h3', {}, 'Models and their last builds'),
      el('div', { class: 'scroll' }, el('table', { class: 'grid wrap', id: 'models' }, el('thead', {}, el('tr', {}, head)), el('tbody', {}, rows))));
  }
  parts.push(el('h3', {}, 'Tests'),
    el('p', { class: 'muted', id: 'model-tests' }, 'Each test shows its last run, as tidemark.model_tests records it: every build runs the tests of the models it builds (a failing error test fails the model, and so a build job\'s run, below), and `tidemark test` runs them without building.'));
  parts.push(el('h3', {}, 'Build jobs'));
  if (!m.daemon) {
    parts.push(el('p', { class: 'muted', id: 'jobs' }, 'No daemon serves this console (tidemark console alone): build jobs and their runs are shown when `tidemark run` serves it.'));
  } else if (!m.jobs) {
    parts.push(el('p', { class: 'muted', id: 'jobs' }, 'Jobs are shown to admin roles.'));
  } else if (!m.jobs.length) {
    parts.push(el('p', { class: 'muted', id: 'jobs' }, 'No [jobs.*] of kind "build" configured.'));
  } else {
    parts.push(jobsTable(m.jobs));
  }
  if (m.broken && (m.broken.length || m.broken_tests.length)) {
    parts.push(el('h3', {}, 'Models and tests that cannot be read'),
      el('ul', { class: 'plain', id: 'models-broken' },
        m.broken.map((b) => el('li', {}, el('strong', {}, b.name), el('pre', { class: 'error' }, b.error))),
        m.broken_tests.map((e) => el('li', {}, el('pre', { class: 'error' }, e)))));
  }
  view.replaceChildren(...parts);
}

// A TTL in seconds as a duration (30d, 12h, 90m, 45s).
function durationOf(s) {
  if (s == null) return 'none (values never go stale)';
  for (const [unit, n] of [['d', 86400], ['h', 3600], ['m', 60]]) {
    if (s >= n && s % n === 0) return s / n + unit;
  }
  return s + 's';
}

async function renderFeatures(view) {
  view.replaceChildren(el('h2', {}, 'Features'), el('p', { class: 'muted' }, 'Loading…'));
  const f = await api('GET', 'features');
  const parts = [el('h2', {}, 'Features')];
  if (!f.served) {
    parts.push(el('p', { class: 'muted', id: 'online-store' }, 'The online store is not served by this process (`tidemark run` serves it): entity counts and freshness are shown there.'));
  }
  if (!f.views.length) {
    parts.push(el('p', { class: 'muted', id: 'feature-views' }, 'No feature view your role reads ([features.NAME] in the config file).'));
    view.replaceChildren(...parts);
    return;
  }
  const cards = f.views.map((v) => {
    const facts = el('dl', { class: 'facts' });
    const fact = (k, val) => facts.append(el('dt', {}, k), el('dd', {}, val));
    fact('Source', v.source ? el('a', { class: 'table-link', href: tablePage(v.source) }, v.source) : 'a table you cannot read');
    fact('Reads', v.read === 'history' ? 'history (every version with its validity)' : 'table (the rows as they are now)');
    fact('Entity', v.entity.join(', ') + (v.join_on.join() === v.entity.join() ? '' : ' (source columns ' + v.join_on.join(', ') + ')'));
    fact('Clock', v.event_time ? v.event_time + ' (event time)' : '_valid_from (when each version became true)');
    fact('TTL', durationOf(v.ttl_s));
    if (v.tags.length) fact('Tags', v.tags.join(', '));
    if (v.owner) fact('Owner', v.owner);
    if (v.online) {
      const o = v.online;
      fact('Online', o.ready ? o.entities.toLocaleString('en') + ' entities' : 'being built from the lake');
      fact('Freshness', o.version == null ? '-' : 'source version ' + o.version + ', newest change landed ' + whenOf(o.landed_ms));
      if (o.error) fact('Last error', el('span', { class: 'bad' }, o.error));
    } else if (f.served) {
      fact('Online', 'not in the online store');
    }
    const features = grid(['Feature', 'Type', 'SQL', 'What it is'],
      v.features.map((x) => [x.name, x.type || '-', x.sql, x.description || '']));
    return el('section', { class: 'card feature-view', 'data-view': v.name },
      el('h3', {}, v.name),
      v.description ? el('p', {}, v.description) : null,
      facts, features);
  });
  parts.push(el('div', { id: 'feature-views' }, cards));
  view.replaceChildren(...parts);
}

// ---------------------------------------------------------------- dashboards

// Saved dashboards and charts; a new dashboard from picked charts.
async function renderDashboards(view) {
  const [dashboards, charts] = await Promise.all([api('GET', 'dashboards'), api('GET', 'charts')]);
  const msg = el('p', { id: 'dash-msg', class: 'muted' });
  const remove = (what, id) => async () => {
    try {
      await api('DELETE', what + '/' + encodeURIComponent(id));
      route();
    } catch (e) {
      showError(e, msg);
    }
  };
  const dlist = dashboards.length
    ? el('ul', { id: 'dashboards', class: 'plain' }, dashboards.map((d) =>
      el('li', {},
        el('a', { class: 'dashboard-link', href: '#/dashboard/' + encodeURIComponent(d.id) }, d.name),
        el('span', { class: 'muted' }, ' · ' + d.owner + ', saved ' + d.saved_at + ' '),
        d.editable ? el('button', { type: 'button', class: 'link', onclick: remove('dashboards', d.id) }, 'Delete') : null)))
    : el('p', { id: 'dashboards', class: 'muted' }, 'No dashboard yet.');
  const clist = charts.length
    ? el('ul', { id: 'charts', class: 'plain' }, charts.map((c) =>
      el('li', {},
        el('label', { class: 'check' }, el('input', { type: 'checkbox', class: 'dash-pick', value: c.id }), c.name),
        el('span', { class: 'muted' }, ' · ' + c.kind + ', ' + c.owner + ' '),
        c.editable ? el('button', { type: 'button', class: 'link', onclick: remove('charts', c.id) }, 'Delete') : null)))
    : el('p', { id: 'charts', class: 'muted' }, 'No chart yet: run a query in the SQL editor, draw it, and save it.');
  const name = el('input', { id: 'dash-name', placeholder: 'Dashboard name' });
  const create = async () => {
    const picked = [...view.querySelectorAll('.dash-pick:checked')].map((i) => i.value);
    try {
      const d = await api('POST', 'dashboards', { name: name.value, charts: picked });
      location.hash = '#/dashboard/' + encodeURIComponent(d.id);
    } catch (e) {
      showError(e, msg);
    }
  };
  view.replaceChildren(
    el('h2', {}, 'Dashboards'), dlist,
    el('h3', {}, 'Charts'), clist,
    el('div', { class: 'toolbar' }, name, el('button', { id: 'dash-create', type: 'button', class: 'primary', onclick: create }, 'New dashboard from the picked charts')),
    msg);
}

const DAY_MS = 86400000;

// One dashboard: its cards in a grid, each drawn from its query run as the viewer,
// as of the instant the slider picks, optionally over the same query N days before.
async function renderDashboard(view, id) {
  const d = await api('GET', 'dashboards/' + encodeURIComponent(id));
  const asOf = el('input', { id: 'dash-asof', type: 'range', min: 0, max: 365, step: 1, value: 0 });
  const asOfLabel = el('span', { id: 'dash-asof-label' });
  const compare = el('input', { id: 'dash-compare', type: 'checkbox' });
  const days = el('input', { id: 'dash-compare-days', type: 'number', min: 1, max: 3650, value: 30, class: 'narrow' });
  const cards = el('div', { class: 'cards', id: 'cards' });
  const instant = () => {
    const back = Number(asOf.value);
    return back ? minuteOf(Date.now() - back * DAY_MS) : '';
  };
  const label = () => {
    const t = instant();
    asOfLabel.textContent = t ? t.slice(0, 16).replace('T', ' ') + ' UTC (' + asOf.value + ' days ago)' : 'now';
  };
  let generation = 0;
  const load = async () => {
    const mine = ++generation;
    const t = instant();
    const when = compare.checked ? compareInstants(t, Number(days.value)) : { asOf: t };
    await Promise.all(d.cards.map((c, i) => drawCard(cards.children[i], c, when, () => mine === generation)));
    if (mine === generation) cards.dataset.drawn = String(mine);
  };
  asOf.addEventListener('input', label);
  for (const control of [asOf, compare, days]) control.addEventListener('change', () => { label(); load(); });
  label();
  cards.replaceChildren(...d.cards.map((c) =>
    el('div', { class: 'card chart-card', 'data-chart': c.chart },
      el('h3', {}, c.summary ? c.summary.name : 'A deleted chart'),
      el('div', { class: 'chart-box chart' }),
      el('p', { class: 'card-msg muted' }))));
  view.replaceChildren(
    el('h2', {}, d.name),
    el('p', { class: 'muted' }, 'By ' + d.owner + ', saved ' + d.saved_at + '. Every card runs as you: what your role reads, masked and filtered as for you.'),
    el('div', { class: 'toolbar' },
      el('label', {}, 'As of ', asOf), asOfLabel,
      el('label', { class: 'check' }, compare, 'compare with'), days, el('span', {}, 'days earlier')),
    d.cards.length ? cards : el('p', { class: 'muted' }, 'No charts on this dashboard.'));
  await load();
}

async function drawCard(card, c, when, current) {
  const box = card.querySelector('.chart-box');
  const msg = card.querySelector('.card-msg');
  if (!c.summary) return;
  msg.textContent = 'Loading…';
  msg.className = 'card-msg muted';
  try {
    const r = await api('POST', 'charts/' + encodeURIComponent(c.chart) + '/data', { as_of: when.asOf || undefined, compare_as_of: when.compareAsOf });
    if (!current()) return;
    const err = r.now.error || (r.compare && r.compare.error);
    if (err) {
      box.replaceChildren();
      msg.className = 'card-msg error';
      msg.textContent = err.message + ' (SQLSTATE ' + err.sqlstate + ')';
      return;
    }
    const spec = Object.assign({ kind: r.chart.kind, x: r.chart.x, y: r.chart.y, height: 240 }, when.labels || {});
    drawChart(box, spec, r.now, r.compare);
    const open = el('button', { type: 'button', class: 'link', onclick: () => openInEditor(r.chart.sql, Object.assign({}, r.chart, { kind: r.chart.kind })) }, 'Open in the editor');
    msg.className = 'card-msg muted';
    msg.replaceChildren((r.now.truncated ? 'The first 10,000 rows. ' : '') + (when.asOf ? 'As of ' + when.asOf + '. ' : ''), open);
  } catch (e) {
    if (current()) showError(e, msg);
  }
}

// ---------------------------------------------------------------- start

async function boot() {
  $('#login-form').addEventListener('submit', onLogin);
  $('#signout').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  try {
    signedIn(await api('GET', 'session'));
  } catch (e) {
    signedOut(e.status === 401 ? '' : e.message);
  }
}

boot();
