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
  query: null, // { id, sql, offset, done } of the result on show
};

const $ = (sel) => document.querySelector(sel);

// An element with attributes and children; strings become text nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
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

const PAGES = { health: renderHealth, catalog: renderCatalog, sql: renderSql };

function route() {
  if (!state.me) return;
  const name = (location.hash.replace(/^#\//, '') || 'health').split('/')[0];
  const page = PAGES[name] ? name : 'health';
  for (const a of document.querySelectorAll('nav a')) {
    a.classList.toggle('active', a.id === 'nav-' + page);
  }
  // Leaving the editor closes its open result on the server.
  if (page !== 'sql') closeShown();
  const view = $('#view');
  view.dataset.page = page;
  PAGES[page](view).catch((e) => {
    const box = el('p', { class: 'error', id: 'page-error' });
    view.append(box);
    showError(e, box);
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
}

// A name as SQL needs it: quoted unless plain lower snake_case.
function ident(name) {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : '"' + name.replace(/"/g, '""') + '"';
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
              el('summary', {}, t.name, el('span', { class: 'muted' }, ' · ' + t.kind + ', ' + t.columns.length + ' columns')),
              grid(['Column', 'Type', 'Nullable'], t.columns.map((col) => [col.name, col.type, col.nullable ? 'yes' : 'no'])),
              el('button', { type: 'button', onclick: () => openInEditor('SELECT * FROM ' + ident(s.name) + '.' + ident(t.name) + ' LIMIT 100') }, 'Query'));
          })),
      );
    }
    list.replaceChildren(...(sections.length ? sections : [el('p', { class: 'muted' }, 'No table matches.')]));
  };
  search.addEventListener('input', draw);
  draw();
  view.replaceChildren(el('h2', {}, 'Catalog'), search, list);
}

function openInEditor(sql) {
  state.sql = sql;
  location.hash = '#/sql';
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
    toolbar,
    el('p', { id: 'sql-error', class: 'error', role: 'alert' }),
    el('div', { id: 'sql-result' }),
    el('div', { class: 'toolbar' },
      el('button', { id: 'sql-next', type: 'button', disabled: true, onclick: nextPage }, 'Next ' + PAGE_ROWS + ' rows')));
  text.focus();
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
  const q = { id: newId(), sql, offset: 0, done: false };
  state.query = q;
  busy(true);
  $('#sql-error').textContent = '';
  $('#sql-status').textContent = 'Running…';
  const t0 = performance.now();
  try {
    const page = await api('POST', 'queries', { id: q.id, sql, page_rows: PAGE_ROWS });
    if (state.query === q) show(page, performance.now() - t0);
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
  $('#sql-status').textContent = shown + (page.done ? ' (end)' : '') + ' · ' + Math.round(ms) + ' ms';
}

// The whole result as a file: a form post, so the browser streams it to disk.
function downloadCsv(sql) {
  const form = el('form', { method: 'post', action: 'api/csv' },
    el('input', { type: 'hidden', name: 'sql', value: sql }),
    el('input', { type: 'hidden', name: 'csrf', value: state.me.csrf }));
  document.body.append(form);
  form.submit();
  form.remove();
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
