/* Shared: JSON calls, problem+json errors, the token, live sockets, the product list, formatting. */
'use strict';
window.Seckill = (() => {
  // Builds an element; children go in as text, so server data never becomes markup.
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (v != null) el.setAttribute(k, v);
    }
    el.append(...kids.flat().filter((c) => c != null && c !== false));
    return el;
  }
  // Writes only on change: 1 s ticks stay cheap and screen readers are not re-fed the same text.
  const setText = (el, text) => el.textContent !== text && (el.textContent = text);
  // Orders `nodes` under `parent`, moving only what is out of place (a moved node loses focus).
  function placeInOrder(parent, nodes) {
    let at = parent.firstChild;
    for (const n of nodes) if (n === at) at = n.nextSibling; else parent.insertBefore(n, at);
  }
  // Runs `fn` with the button busy; aria-disabled, as `disabled` would drop keyboard focus.
  async function busy(button, label, fn) {
    if (button.ariaBusy === 'true') return;
    const text = button.textContent;
    button.ariaBusy = button.ariaDisabled = 'true';
    button.textContent = label;
    try { return await fn(); } finally {
      button.textContent = text;
      button.ariaBusy = button.ariaDisabled = 'false';
    }
  }

  let offset = 0; // server clock minus ours: deadlines are server times, and a phone's clock may be off
  async function api(path, { method = 'GET', body, token, headers = {} } = {}) {
    if (body) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = 'Bearer ' + token;
    let res, data = null;
    try {
      res = await fetch(path, { method, headers, body: body && JSON.stringify(body), cache: 'no-store' });
    } catch (_) {
      throw { title: 'Network error', detail: 'The server could not be reached.', code: 'NETWORK_ERROR', network: true };
    }
    const d = Date.parse(res.headers.get('Date')) + 500 - Date.now(); // whole seconds: ignore smaller skews
    if (Math.abs(d - offset) > 1000) offset = Math.abs(d) > 1000 ? d : 0;
    try { data = JSON.parse(await res.text()); } catch (_) { /* empty */ }
    if (res.ok) return data;
    const p = data || {};
    throw { title: p.title || res.statusText || 'Error', detail: p.detail, code: p.code || 'HTTP_' + res.status, status: res.status };
  }
  const listOf = (d, key) => (Array.isArray(d) ? d : (d && (d[key] || d.items)) || []);

  // In sessionStorage the token dies with the tab; each page has its own key.
  const session = (key) => ({
    get() { try { const s = JSON.parse(sessionStorage[key]); return !s.expiresAt || s.expiresAt > Date.now() ? s : null; } catch (_) { return null; } },
    set(s) { try { sessionStorage[key] = JSON.stringify(s); } catch (_) { /* this view only */ } },
    clear() { try { sessionStorage.removeItem(key); } catch (_) { /* none */ } },
  });
  async function login(username, password) {
    const r = (await api('/api/v1/auth/login', { method: 'POST', body: { username, password } })) || {};
    if (!r.access_token) throw { title: 'Sign-in failed', detail: 'No token came back.', code: 'NO_TOKEN' };
    let claims = {};
    try { claims = JSON.parse(atob(r.access_token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))); } catch (_) { /* customer */ }
    const ttl = r.expires_in * 1000 || claims.exp * 1000 - offset - Date.now();
    return { token: r.access_token, username, role: claims.role || 'customer', expiresAt: ttl > 0 && Date.now() + ttl };
  }
  // Timers take at most 2^31-1 ms; longer fires at once.
  const later = (fn, ms) => setTimeout(fn, Math.min(ms, 2 ** 31 - 1));
  // randomUUID needs https or localhost; getRandomValues works on plain http too.
  const uuid = () => (crypto.randomUUID ? crypto.randomUUID() : '10000000-1000-4000-8000-100000000000'
    .replace(/[018]/g, (c) => (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16)));

  // Newest first into an aria-live="polite" region that keeps the last four.
  function messenger(region) {
    const add = (kind, heading, text, code) => {
      const item = h('div', { class: 'msg msg-' + kind },
        h('p', null, heading && [h('strong', null, heading), ' '], text, code && [' ', h('code', null, code)]),
        h('button', { type: 'button', 'aria-label': 'Dismiss', onclick: () => item.remove() }, '×'));
      region.prepend(item);
      while (region.children.length > 4) region.lastChild.remove();
    };
    return {
      info: (text, heading) => add('info', heading, text),
      success: (text, heading) => add('success', heading, text),
      // What we tried, then the problem's title, detail and code.
      error(err, context) {
        if (err instanceof Error) console.error(err);
        const detail = err.detail || err.message;
        add('error', context, (err.title || 'Error') + (detail ? ': ' + detail : ''), err.code || 'CLIENT_ERROR');
      },
    };
  }

  const num = (v, fallback) => (v != null && v !== '' && isFinite(v) ? +v : fallback);
  const localTime = (text) => (isFinite(Date.parse(text)) ? Date.parse(text) - offset : undefined);
  // Moves a deadline only by more than whole-second rounding, so countdowns do not jitter.
  const adopt = (p, key, at) => at != null && !(Math.abs(p[key] - at) <= 1500) && (p[key] = at);

  // Merges a product from GET /products, or a /ws/stock message, into our record.
  function applyProduct(p, m) {
    p.name = m.name != null ? String(m.name) : p.name || 'Product ' + p.id;
    p.priceCents = num(m.price_cents, p.priceCents);
    p.stock = num(m.stock ?? m.stock_total, p.stock);
    p.available = num(m.available, p.available);
    p.limit = num(m.per_user_limit, p.limit);
    for (const k of ['sold_out', 'phase', 'sale', 'requires_token']) if (m[k] != null) p[k] = m[k];
    adopt(p, 'startsAt', localTime(m.starts_at));
    adopt(p, 'endsAt', localTime(m.ends_at));
    const t = Date.now();
    for (const [key, s] of [['startsAt', m.starts_in_seconds], ['endsAt', m.ends_in_seconds]]) {
      // 0 means "passed": keep a known earlier time rather than moving it to now.
      if (typeof s === 'number' && (s > 0 || !(p[key] <= t))) adopt(p, key, t + Math.max(0, s) * 1000);
    }
    return p;
  }
  // The phase now, from the window when known (a countdown reaching 0 opens the sale at once), else the server's.
  const phaseOf = (p, t) => (t < p.startsAt ? 'upcoming' : t >= p.endsAt ? 'ended' : p.startsAt ? 'open' : p.phase || 'open');

  const money = new Intl.NumberFormat(undefined, { style: 'currency', currency: document.documentElement.dataset.currency || 'USD' });
  const formatMoney = (cents) => (isFinite(cents) && cents !== null ? money.format(cents / 100) : '—');
  // "0:42", "1h 02m 03s", "2d 03h 04m"; rounds up, so the last second shows 0:01.
  function formatDuration(seconds) {
    const s = Math.max(0, Math.ceil(seconds)) || 0, p = (n) => String(n).padStart(2, '0');
    const d = Math.floor(s / 86400), hr = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    return d ? `${d}d ${p(hr)}h ${p(m)}m` : hr ? `${hr}h ${p(m)}m ${p(s % 60)}s` : `${m}:${p(s % 60)}`;
  }
  const dates = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  const formatTime = (text) => (isFinite(Date.parse(text)) ? dates.format(Date.parse(text)) : '—');

  // A WebSocket that comes back when it drops: after 1 s, doubling to 30 s, reset only once a message arrives
  // (so a server that accepts then closes, like 1013 when full, is backed off too). 1008 refuses the request
  // itself; retrying cannot help, so it stops and calls onRefused.
  class LiveSocket {
    constructor(opts) { this.opts = opts; }
    start() {
      if (this.running) return;
      this.running = true;
      this.delay = 1000;
      this.connect();
    }
    stop() {
      this.running = false;
      clearTimeout(this.timer);
      this.drop();
      this.report('off');
    }
    drop() {
      if (this.ws) this.ws.onclose = this.ws.close(); // close and forget it: its close event must not reconnect
      this.ws = null;
    }
    connect() {
      const o = this.opts;
      this.drop();
      this.report('connecting');
      const ws = (this.ws = new WebSocket(location.origin.replace(/^http/, 'ws') + o.path(), o.protocols ? o.protocols() : []));
      ws.onopen = () => { this.report('live'); if (o.onOpen) o.onOpen(); };
      ws.onmessage = (ev) => {
        this.delay = 1000;
        let m;
        try { m = JSON.parse(ev.data); } catch (_) { return; }
        if (m && m.type !== 'heartbeat' && ws === this.ws) o.onMessage(m);
      };
      ws.onclose = (ev) => {
        this.ws = null;
        if (ev.code === 1008) {
          this.running = false;
          this.report('refused', ev.reason);
          return o.onRefused && o.onRefused();
        }
        this.report('reconnecting', this.delay);
        this.timer = setTimeout(() => this.connect(), this.delay);
        this.delay = Math.min(this.delay * 2, 30000);
      };
    }
    report(state, info) {
      const el = this.opts.indicator;
      el.dataset.state = state;
      el.textContent = { live: 'Live', connecting: 'Connecting…', reconnecting: `Reconnecting in ${info / 1000} s`, refused: 'Disconnected', off: 'Not connected' }[state];
      el.title = state === 'refused' ? 'Refused: ' + info : '';
    }
  }

  // The product list of both pages: GET /products every 30 s, and one /ws/stock socket for exactly the listed
  // products, reopened when that set changes. `render(p)` must give each record an element at p.el.root.
  function catalog({ list, render, indicator, onLoad, onError, active = () => true }) {
    const products = new Map();
    let query = '', failing = false, timer;
    const socket = new LiveSocket({
      path: () => '/ws/stock?products=' + query,
      onMessage: (m) => m.type === 'stock' && (products.has(String(m.product_id)) ? render(applyProduct(products.get(String(m.product_id)), m)) : reload()),
      indicator,
    });
    async function load() {
      if (!active()) return socket.stop();
      let data;
      try { data = listOf(await api('/api/v1/products'), 'products'); } catch (err) {
        if (!failing) onError(err); // once, not every 30 s
        return (failing = true);
      }
      failing = false;
      const seen = data.filter((m) => m && m.id != null).map((m) => {
        const id = String(m.id);
        if (!products.has(id)) products.set(id, { id, sale: 'open' }); // open until the feed says otherwise
        return applyProduct(products.get(id), m);
      });
      for (const [id, p] of products) if (!seen.includes(p)) { p.el.root.remove(); products.delete(id); }
      seen.forEach(render);
      placeInOrder(list, seen.map((p) => p.el.root));
      const q = [...products.keys()].sort((a, b) => a - b).join(',');
      if (q !== query || !socket.running) {
        query = q;
        socket.stop();
        if (q) socket.start();
      }
      if (onLoad) onLoad(seen);
    }
    const reload = () => { clearTimeout(timer); timer = setTimeout(load, 1000); };
    setInterval(load, 30000); // fallback for whatever the stock feed missed
    setInterval(() => products.forEach(render), 1000); // countdowns
    return { products, load, reload };
  }

  return { h, setText, placeInOrder, busy, api, listOf, session, login, later, uuid, messenger, num, localTime, phaseOf, formatMoney, formatDuration, formatTime, LiveSocket, catalog };
})();
