// The Portcullis SQL console. Everything goes through the gateway's own API as the signed-in
// person: GET /auth/session (who am I, and the CSRF token), GET /v1/datasets, POST /v1/sql.
// No third-party code, no inline script (the page's Content-Security-Policy forbids both).
'use strict';

const MAX_SHOWN_ROWS = 5000;
const $ = (id) => document.getElementById(id);
let session = null;
let running = null; // the AbortController of the query in flight

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
    const item = document.createElement('li');
    const button = text('button', dataset.name, 'dataset');
    button.type = 'button';
    button.title = 'Insert a query for this dataset';
    button.append(text('span', dataset.kind || '', 'kind'));
    button.addEventListener('click', () => {
      $('editor').value = `SELECT * FROM ${dataset.name} LIMIT 100`;
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

function cell(value) {
  if (value === null || value === undefined) return text('td', 'NULL', 'null');
  const td = text('td', typeof value === 'object' ? JSON.stringify(value) : value);
  if (typeof value === 'number') td.className = 'num';
  return td;
}

async function run() {
  if (running) return;
  clearError();
  const table = $('table');
  const thead = $('thead');
  const tbody = $('tbody');
  thead.replaceChildren();
  tbody.replaceChildren();
  table.hidden = true;
  const status = $('status');
  status.textContent = 'Running…';
  running = new AbortController();
  $('run').disabled = true;
  $('cancel').disabled = false;
  const started = performance.now();
  let count = 0;
  let columns = null;
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
      const rows = splitter.push(value);
      if (rows.length && !columns) {
        columns = Object.keys(rows[0]);
        const tr = document.createElement('tr');
        for (const name of columns) { const th = text('th', name); th.scope = 'col'; tr.append(th); }
        thead.append(tr);
        table.hidden = false;
      }
      const fragment = document.createDocumentFragment();
      for (const row of rows) {
        count++;
        if (count > MAX_SHOWN_ROWS) continue;
        const tr = document.createElement('tr');
        for (const name of columns) tr.append(cell(row[name]));
        fragment.append(tr);
      }
      tbody.append(fragment);
      status.textContent = `${count.toLocaleString()} rows so far…`;
    }
    if (!splitter.complete) throw new Error('the result stream broke off before its end');
    const ms = Math.round(performance.now() - started);
    const shown = count > MAX_SHOWN_ROWS ? ` (first ${MAX_SHOWN_ROWS.toLocaleString()} shown; download for all)` : '';
    status.textContent = `${count.toLocaleString()} ${count === 1 ? 'row' : 'rows'} in ${ms} ms${shown}.`;
  } catch (e) {
    if (e.name === 'AbortError') status.textContent = `Cancelled after ${count.toLocaleString()} rows.`;
    else { showError({ code: 'stream_error', message: e.message }); status.textContent = 'Failed.'; }
  } finally {
    running = null;
    $('run').disabled = false;
    $('cancel').disabled = true;
  }
}

async function download(accept, extension) {
  clearError();
  const status = $('status');
  status.textContent = `Preparing ${extension.toUpperCase()} download…`;
  const response = await sqlRequest(accept);
  if (!response.ok) {
    const err = await apiError(response);
    showError(err);
    status.textContent = `Refused (${err.status} ${err.code}).`;
    return;
  }
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = `result.${extension}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  status.textContent = `Downloaded result.${extension} (${blob.size.toLocaleString()} bytes).`;
}

async function signOut() {
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
  $('csv').addEventListener('click', () => download('text/csv', 'csv'));
  $('arrow').addEventListener('click', () => download('application/vnd.apache.arrow.stream', 'arrow'));
  $('signout').addEventListener('click', signOut);
  $('editor').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run();
    }
  });
  loadSession().then(loadDatasets).catch((e) => showError({ code: 'network_error', message: e.message }));
});
