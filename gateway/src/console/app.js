// The Portcullis SQL console. Everything goes through the gateway's own API as the signed-in
// person: GET /auth/session (who am I, and the CSRF token), GET /v1/datasets, POST /v1/sql.
// No third-party code, no inline script (the page's Content-Security-Policy forbids both).
'use strict';

// Rows kept in the page for paging, sorting, filtering and CSV download; a larger result is
// counted to its end and exported instead.
const MAX_KEPT_ROWS = 200000;
const PAGE_ROWS = 500;
const HISTORY_MAX = 50;
const KEYWORDS = new Set(('SELECT FROM WHERE AND OR NOT IN IS NULL AS ON JOIN LEFT RIGHT FULL INNER OUTER CROSS ' +
  'GROUP BY ORDER HAVING LIMIT OFFSET UNION ALL DISTINCT INTERSECT EXCEPT WITH CASE WHEN THEN ELSE END ' +
  'ASC DESC LIKE ILIKE BETWEEN EXISTS CAST TRUE FALSE OVER PARTITION COUNT SUM AVG MIN MAX EXPLAIN ANALYZE VALUES').split(' '));
const $ = (id) => document.getElementById(id);
let session = null;
let running = null; // the AbortController of the query in flight
// The last result: its SQL, columns, the rows kept (arrays), how many came in all, and
// whether the stream ended normally. `view` is what the table shows of it.
let result = null;
const view = { sort: null, filter: '', page: 0, visible: [] };
// Dataset and column names the caller may read (/v1/datasets), for completion and colour.
const names = { datasets: new Set(), columns: new Set(), all: [] };

function text(tag, content, className) {
  const el = document.createElement(tag);
  if (content !== undefined && content !== null) el.textContent = String(content);
  if (className) el.className = className;
  return el;
}

// An API refusal, worded exactly as the gateway or engine wrote it.
async function apiError(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || 'request failed';
  let requestId = response.headers.get('x-request-id');
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
    if (body && body.request_id) requestId = body.request_id;
  } catch (_) { /* not JSON: keep the status line */ }
  return { status: response.status, code, message, requestId };
}

function showError(err) {
  const box = $('error');
  box.replaceChildren();
  const head = text('p', `${err.status || ''} ${err.code}`.trim(), 'error-code');
  box.append(head, text('p', err.message, 'error-message'));
  if (err.requestId) box.append(text('p', `request id ${err.requestId}`, 'muted small'));
  box.hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error').replaceChildren();
}

function signInAgain() {
  window.location.assign('/auth/login?return_to=' + encodeURIComponent('/console'));
}

async function loadSession() {
  const response = await fetch('/auth/session', { headers: { Accept: 'application/json' } });
  if (response.status === 401) return signInAgain();
  if (!response.ok) return showError(await apiError(response));
  session = await response.json();
  const who = $('who');
  who.replaceChildren();
  const name = text('span', session.principal, 'principal');
  name.title = session.subject ? `subject ${session.subject}` : '';
  who.append(name);
  if (session.email) who.append(text('span', session.email, 'muted'));
  if (session.tenant) who.append(text('span', `tenant ${session.tenant}`, 'chip'));
  for (const group of session.groups || []) who.append(text('span', group, 'chip'));
  who.append(text('span', session.mfa ? 'MFA' : 'no MFA', session.mfa ? 'chip ok' : 'chip warn'));
}

async function loadDatasets() {
  const status = $('datasets-status');
  const list = $('datasets');
  const response = await fetch('/v1/datasets', { headers: { Accept: 'application/json' } });
  if (response.status === 401) return signInAgain();
  if (!response.ok) {
    const err = await apiError(response);
    status.textContent = `${err.code}: ${err.message}`;
    return;
  }
  const body = await response.json();
  const datasets = Array.isArray(body) ? body : (body.datasets || []);
  list.replaceChildren();
  status.textContent = datasets.length === 1 ? '1 dataset' : `${datasets.length} datasets`;
  for (const dataset of datasets) {
    names.datasets.add(dataset.name.toLowerCase());
    for (const column of dataset.columns || []) names.columns.add(column.name.toLowerCase());
    const item = document.createElement('li');
    const button = text('button', dataset.name, 'dataset');
    button.type = 'button';
    button.title = 'Insert a query for this dataset';
    button.append(text('span', dataset.kind || '', 'kind'));
    button.addEventListener('click', () => {
      setEditor(`SELECT * FROM ${dataset.name} LIMIT 100`);
      $('editor').focus();
    });
    item.append(button);
    if (Array.isArray(dataset.columns) && dataset.columns.length) {
      // Columns fold away (native <details>: keyboard and screen-reader friendly).
      const details = document.createElement('details');
      details.append(text('summary', `${dataset.columns.length} columns`, 'muted small'));
      const columns = text('ul', null, 'columns');
      for (const column of dataset.columns) {
        const li = text('li', column.name);
        li.append(text('span', column.type, 'muted'));
        columns.append(li);
      }
      details.append(columns);
      item.append(details);
    }
    list.append(item);
  }
  names.all = [...new Set([...datasets.map((d) => d.name), ...datasets.flatMap((d) => (d.columns || []).map((c) => c.name))])].sort();
  paint();
}

// ---- The editor: the draft and history (this browser, this person), colour, completion.

function storageKey(kind) {
  return `portcullis.console.${kind}.${session ? session.principal : ''}`;
}

function readHistory() {
  try { return JSON.parse(localStorage.getItem(storageKey('history')) || '[]'); } catch (_) { return []; }
}

function remember(sql) {
  const history = [sql, ...readHistory().filter((q) => q !== sql)].slice(0, HISTORY_MAX);
  try { localStorage.setItem(storageKey('history'), JSON.stringify(history)); } catch (_) { /* full or off */ }
  renderHistory();
}

function renderHistory() {
  const list = $('history');
  list.replaceChildren();
  for (const sql of readHistory()) {
    const item = document.createElement('li');
    const button = text('button', sql, 'past');
    button.type = 'button';
    button.title = 'Put this query back in the editor';
    button.addEventListener('click', () => { setEditor(sql); $('editor').focus(); });
    item.append(button);
    list.append(item);
  }
}

function setEditor(sql) {
  $('editor').value = sql;
  saveDraft();
  paint();
}

function saveDraft() {
  try { localStorage.setItem(storageKey('draft'), $('editor').value); } catch (_) { /* full or off */ }
}

function restoreDraft() {
  const draft = localStorage.getItem(storageKey('draft'));
  if (draft !== null) $('editor').value = draft;
  renderHistory();
  paint();
}

// Colours the SQL in a layer under the (transparent-text) textarea.
function paint() {
  const out = document.createDocumentFragment();
  const sql = $('editor').value;
  const token = /('(?:[^']|'')*'?)|("(?:[^"]|"")*"?)|(--[^\n]*)|(\b\d+(?:\.\d+)?\b)|([A-Za-z_][A-Za-z0-9_.]*)|([\s\S])/g;
  for (const m of sql.matchAll(token)) {
    const [word] = m;
    let cls = null;
    if (m[1] || m[2]) cls = 'str';
    else if (m[3]) cls = 'cmt';
    else if (m[4]) cls = 'num';
    else if (m[5]) {
      const lower = word.toLowerCase();
      if (KEYWORDS.has(word.toUpperCase())) cls = 'kw';
      else if (names.datasets.has(lower)) cls = 'ds';
      else if (names.columns.has(lower)) cls = 'col';
    }
    out.append(cls ? text('span', word, cls) : document.createTextNode(word));
  }
  // A trailing newline needs a line of its own to keep both layers the same height.
  out.append(document.createTextNode('\n'));
  $('highlight').replaceChildren(out);
  syncScroll();
}

function syncScroll() {
  $('highlight').scrollTop = $('editor').scrollTop;
  $('highlight').scrollLeft = $('editor').scrollLeft;
}

// The word before the caret and the names that complete it.
function completions() {
  const editor = $('editor');
  const before = editor.value.slice(0, editor.selectionStart);
  const word = (before.match(/[A-Za-z_][A-Za-z0-9_.]*$/) || [''])[0];
  if (word.length < 2 || editor.selectionStart !== editor.selectionEnd) return { word, options: [] };
  const lower = word.toLowerCase();
  const options = names.all.filter((n) => n.toLowerCase().startsWith(lower) && n.toLowerCase() !== lower).slice(0, 8);
  return { word, options };
}

let chosen = 0;
function suggest() {
  const { options } = completions();
  const list = $('suggest');
  list.replaceChildren();
  chosen = 0;
  options.forEach((option, i) => {
    const li = text('li', option);
    li.id = `suggest-${i}`;
    li.setAttribute('role', 'option');
    li.addEventListener('mousedown', (event) => { event.preventDefault(); chosen = i; accept(); });
    list.append(li);
  });
  list.hidden = options.length === 0;
  $('editor').setAttribute('aria-expanded', String(!list.hidden));
  mark();
}

function mark() {
  const items = [...$('suggest').children];
  items.forEach((li, i) => li.setAttribute('aria-selected', String(i === chosen)));
  $('editor').setAttribute('aria-activedescendant', items.length ? `suggest-${chosen}` : '');
}

function accept() {
  const { word, options } = completions();
  const option = options[chosen];
  if (!option) return false;
  const editor = $('editor');
  const at = editor.selectionStart;
  editor.setRangeText(option, at - word.length, at, 'end');
  closeSuggest();
  saveDraft();
  paint();
  return true;
}

function closeSuggest() {
  $('suggest').hidden = true;
  $('editor').setAttribute('aria-expanded', 'false');
}

function sqlRequest(accept, signal) {
  return fetch('/v1/sql', {
    method: 'POST',
    headers: {
      Accept: accept,
      'Content-Type': 'text/plain; charset=utf-8',
      'X-CSRF-Token': session ? session.csrf_token : '',
    },
    body: $('editor').value,
    signal,
  });
}

// Cuts the top-level objects out of a JSON array as its bytes arrive, so rows show as they
// stream instead of when the whole result has come.
class RowSplitter {
  constructor() { this.buffer = ''; this.depth = 0; this.inString = false; this.escaped = false; this.start = -1; this.pos = 0; }
  push(chunk) {
    this.buffer += chunk;
    const rows = [];
    for (; this.pos < this.buffer.length; this.pos++) {
      const c = this.buffer[this.pos];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === '\\') this.escaped = true;
        else if (c === '"') this.inString = false;
        continue;
      }
      if (c === '"') this.inString = true;
      else if (c === '{' || c === '[') {
        this.depth++;
        if (this.depth === 2 && c === '{') this.start = this.pos;
      } else if (c === '}' || c === ']') {
        this.depth--;
        if (this.depth === 1 && c === '}' && this.start >= 0) {
          rows.push(JSON.parse(this.buffer.slice(this.start, this.pos + 1)));
          this.start = -1;
        }
      }
    }
    if (this.start < 0) { this.buffer = ''; this.pos = 0; } // nothing half-read to keep
    return rows;
  }
  get complete() { return this.depth === 0 && !this.inString; }
}

function cellText(value) {
  if (value === null || value === undefined) return '';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

function cell(value) {
  if (value === null || value === undefined) return text('td', 'NULL', 'null');
  const td = text('td', cellText(value));
  if (typeof value === 'number') td.className = 'num';
  return td;
}

// NULLs last, numbers as numbers, the rest as text.
function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;
  if (b === null || b === undefined) return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return cellText(a).localeCompare(cellText(b), undefined, { numeric: true });
}

// Recomputes the rows the table shows (filtered, sorted) and shows the current page.
function refresh() {
  if (!result) return;
  const needle = view.filter.toLowerCase();
  let rows = needle ? result.rows.filter((row) => row.some((v) => cellText(v).toLowerCase().includes(needle))) : result.rows;
  if (view.sort) {
    const { index, dir } = view.sort;
    rows = [...rows].sort((x, y) => {
      const c = compare(x[index], y[index]);
      // NULLs stay last whichever way.
      return (x[index] === null || y[index] === null) ? c : dir * c;
    });
  }
  view.visible = rows;
  view.page = Math.min(view.page, Math.max(0, Math.ceil(rows.length / PAGE_ROWS) - 1));
  renderPage();
}

function renderPage() {
  const thead = $('thead');
  const tbody = $('tbody');
  thead.replaceChildren();
  tbody.replaceChildren();
  const tr = document.createElement('tr');
  result.columns.forEach((name, index) => {
    const th = document.createElement('th');
    th.scope = 'col';
    const sorted = view.sort && view.sort.index === index;
    th.setAttribute('aria-sort', sorted ? (view.sort.dir > 0 ? 'ascending' : 'descending') : 'none');
    const button = text('button', name, 'sort');
    button.type = 'button';
    button.title = 'Sort by this column';
    if (sorted) button.append(text('span', view.sort.dir > 0 ? ' ▲' : ' ▼', 'arrow'));
    button.addEventListener('click', () => {
      view.sort = sorted ? { index, dir: -view.sort.dir } : { index, dir: 1 };
      refresh();
    });
    th.append(button);
    tr.append(th);
  });
  thead.append(tr);
  const first = view.page * PAGE_ROWS;
  const fragment = document.createDocumentFragment();
  for (const row of view.visible.slice(first, first + PAGE_ROWS)) {
    const line = document.createElement('tr');
    for (const value of row) line.append(cell(value));
    fragment.append(line);
  }
  tbody.append(fragment);
  $('table').hidden = false;
  $('result-tools').hidden = false;
  const total = view.visible.length;
  const of = total === result.rows.length ? '' : ` (filtered from ${result.rows.length.toLocaleString()})`;
  $('range').textContent = total ? `rows ${(first + 1).toLocaleString()}–${Math.min(first + PAGE_ROWS, total).toLocaleString()} of ${total.toLocaleString()}${of}` : `no rows match${of}`;
  $('prev').disabled = view.page === 0;
  $('next').disabled = first + PAGE_ROWS >= total;
}

async function run() {
  if (running) return;
  clearError();
  closeSuggest();
  $('table').hidden = true;
  $('result-tools').hidden = true;
  const status = $('status');
  status.textContent = 'Running…';
  running = new AbortController();
  $('run').disabled = true;
  $('cancel').disabled = false;
  const started = performance.now();
  const sql = $('editor').value;
  remember(sql);
  result = { sql, columns: [], rows: [], count: 0, complete: false };
  view.sort = null;
  view.page = 0;
  let shown = false;
  try {
    const response = await sqlRequest('application/json', running.signal);
    if (!response.ok) {
      const err = await apiError(response);
      showError(err);
      status.textContent = `Refused (${err.status} ${err.code}) after ${Math.round(performance.now() - started)} ms.`;
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const splitter = new RowSplitter();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const row of splitter.push(value)) {
        if (!result.columns.length) result.columns = Object.keys(row);
        result.count++;
        if (result.rows.length < MAX_KEPT_ROWS) result.rows.push(result.columns.map((name) => row[name]));
      }
      // The first page as soon as it is there; the rest when the result has come.
      if (!shown && result.rows.length >= PAGE_ROWS) { refresh(); shown = true; }
      status.textContent = `${result.count.toLocaleString()} rows so far…`;
    }
    if (!splitter.complete) throw new Error('the result stream broke off before its end');
    result.complete = true;
    refresh();
    const ms = Math.round(performance.now() - started);
    const kept = result.count > MAX_KEPT_ROWS ? ` (the first ${MAX_KEPT_ROWS.toLocaleString()} kept here; export for all)` : '';
    status.textContent = `${result.count.toLocaleString()} ${result.count === 1 ? 'row' : 'rows'} in ${ms} ms${kept}.`;
  } catch (e) {
    if (result.rows.length) refresh();
    if (e.name === 'AbortError') status.textContent = `Cancelled after ${result.count.toLocaleString()} rows.`;
    else { showError({ code: 'stream_error', message: e.message }); status.textContent = 'Failed.'; }
  } finally {
    running = null;
    $('run').disabled = false;
    $('cancel').disabled = true;
  }
}

function csvField(value) {
  const s = cellText(value);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// CSV of the rows already fetched, as filtered and sorted: the query does not run again.
// Without a whole result of the editor's query, it is exported instead.
function downloadCsv() {
  if (!result || !result.complete || result.sql !== $('editor').value || result.count > result.rows.length) {
    return download('text/csv', 'csv');
  }
  clearError();
  const lines = [result.columns.map(csvField).join(',')];
  for (const row of view.visible) lines.push(row.map(csvField).join(','));
  save(new Blob([lines.join('\r\n') + '\r\n'], { type: 'text/csv' }), 'result.csv');
  $('status').textContent = `Downloaded result.csv: ${view.visible.length.toLocaleString()} rows already fetched (not run again).`;
}

// Runs the editor's query once for a file (Arrow, or CSV of a result not fetched whole).
async function download(accept, extension) {
  clearError();
  const status = $('status');
  status.textContent = `Exporting ${extension.toUpperCase()} (runs the query)…`;
  const response = await sqlRequest(accept);
  if (!response.ok) {
    const err = await apiError(response);
    showError(err);
    status.textContent = `Refused (${err.status} ${err.code}).`;
    return;
  }
  const blob = await response.blob();
  save(blob, `result.${extension}`);
  status.textContent = `Downloaded result.${extension} (${blob.size.toLocaleString()} bytes).`;
}

async function signOut() {
  // What was typed here stays with the person, not the browser.
  try {
    localStorage.removeItem(storageKey('draft'));
    localStorage.removeItem(storageKey('history'));
  } catch (_) { /* off */ }
  const response = await fetch('/auth/logout', {
    method: 'POST',
    headers: { Accept: 'application/json', 'X-CSRF-Token': session ? session.csrf_token : '' },
  });
  if (!response.ok) return showError(await apiError(response));
  const body = await response.json();
  window.location.assign(body.location || '/auth/signed-out');
}

document.addEventListener('DOMContentLoaded', () => {
  $('run').addEventListener('click', run);
  $('cancel').addEventListener('click', () => running && running.abort());
  $('csv').addEventListener('click', downloadCsv);
  $('arrow').addEventListener('click', () => download('application/vnd.apache.arrow.stream', 'arrow'));
  $('signout').addEventListener('click', signOut);
  $('filter').addEventListener('input', () => { view.filter = $('filter').value; view.page = 0; refresh(); });
  $('prev').addEventListener('click', () => { view.page--; renderPage(); });
  $('next').addEventListener('click', () => { view.page++; renderPage(); });
  const editor = $('editor');
  editor.addEventListener('input', () => { saveDraft(); paint(); suggest(); });
  editor.addEventListener('scroll', syncScroll);
  editor.addEventListener('blur', closeSuggest);
  editor.addEventListener('keydown', (event) => {
    const open = !$('suggest').hidden;
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run();
    } else if (event.key === 'Tab' && !event.shiftKey && (open || completions().options.length)) {
      event.preventDefault();
      accept();
    } else if (open && (event.key === 'ArrowDown' || event.key === 'ArrowUp')) {
      event.preventDefault();
      const count = $('suggest').children.length;
      chosen = (chosen + (event.key === 'ArrowDown' ? 1 : count - 1)) % count;
      mark();
    } else if (open && event.key === 'Escape') {
      event.preventDefault();
      closeSuggest();
    }
  });
  loadSession()
    .then(() => { restoreDraft(); return loadDatasets(); })
    .catch((e) => showError({ code: 'network_error', message: e.message }));
});
