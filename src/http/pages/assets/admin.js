/* Admin: create sales, pause/resume/drain them with live stock, watch the actor tree, reprocess dead letters. */
'use strict';
(() => {
  const S = Seckill, h = S.h, $ = (q) => document.querySelector(q), say = S.messenger($('#messages'));
  const auth = S.session('seckill.admin');
  let me = auth.get();
  if (me && me.role !== 'admin') me = null;
  const actors = new Map(); // actor id -> its elements, kept across refreshes so open <details> stay open

  // Every admin call; a 401 (expired or revoked token) signs out.
  const call = (path, opts) => S.api(path, { ...opts, token: me && me.token }).catch((err) => {
    if (err.status === 401 && me) signOut('Your session has ended. Please sign in again.');
    throw err;
  });

  $('#login-form').onsubmit = (e) => {
    e.preventDefault();
    S.busy($('#login-button'), 'Signing in…', async () => {
      try {
        const who = await S.login($('#username').value.trim(), $('#password').value);
        // The token is valid, but this page would only collect 403s with it: do not keep it.
        if (who.role !== 'admin') throw { title: 'Not an admin', detail: `“${who.username}” is a ${who.role}; this page needs an admin account.`, code: 'FORBIDDEN' };
        auth.set((me = who));
        $('#password').value = '';
        onSession();
      } catch (err) {
        say.error(err, 'Sign-in refused.');
      }
    });
  };
  $('#sign-out').onclick = () => {
    signOut('Signed out.');
    $('#username').focus();
  };
  function signOut(why) {
    auth.clear();
    me = null;
    onSession();
    say.info(why);
  }

  let actorTimer;
  function onSession() {
    for (const s of document.querySelectorAll('main > section')) s.hidden = s.id === 'login' ? !!me : !me;
    $('#signed-in').hidden = !me;
    $('#signed-in-name').textContent = me ? me.username : '';
    clearTimeout(actorTimer);
    cat.load(); // or, signed out, stops its socket
    actors.clear();
    for (const id of ['#actor-tree', '#dead-letters tbody']) $(id).replaceChildren();
    if (!me) return;
    pollActors();
    loadDeadLetters();
  }

  /* Create a sale */
  $('#create-form').onsubmit = (e) => {
    e.preventDefault();
    const v = (id) => $(id).value.trim();
    // Blank optional fields are left out, so the server applies its defaults.
    const body = { name: v('#name'), price_cents: Math.round(v('#price') * 100), stock: +v('#stock') };
    for (const [id, key] of [['#per-user-limit', 'per_user_limit'], ['#shards', 'shards'], ['#payment-window', 'payment_window_secs']]) {
      if (v(id)) body[key] = +v(id);
    }
    // datetime-local is local time without a zone; the server wants RFC 3339.
    for (const [id, key] of [['#starts-at', 'starts_at'], ['#ends-at', 'ends_at']]) if (v(id)) body[key] = new Date(v(id)).toISOString();
    S.busy($('#create-button'), 'Creating…', async () => {
      try {
        const p = await call('/api/v1/admin/products', { method: 'POST', body });
        say.success(`Created sale #${p.id}, ${p.name}.`);
        $('#created').replaceChildren(...[['ID', p.id], ['Name', p.name], ['Price', S.formatMoney(p.price_cents)], ['Stock', p.stock ?? p.stock_total],
          ['Per-customer limit', p.per_user_limit], ['Starts', S.formatTime(p.starts_at)], ['Ends', S.formatTime(p.ends_at)],
          ['Payment window', p.payment_window_secs && p.payment_window_secs + ' s'], ['Phase', p.phase]]
          .filter((r) => r[1] != null).flatMap(([k, val]) => [h('dt', null, k), h('dd', null, String(val))]));
        $('#created').hidden = false;
        e.target.reset();
        cat.load();
      } catch (err) {
        say.error(err, 'Could not create the sale.');
      }
    });
  };

  /* Products */
  function render(p) {
    if (!p.el) {
      const e = (p.el = { name: h('h3', { id: 'p' + p.id }), sale: h('span', { class: 'sale badge' }), meta: h('p', { class: 'muted' }),
        bar: h('progress', { 'aria-label': 'Units available' }), available: h('span', { class: 'available' }), stock: h('span') });
      for (const [action, busy] of [['pause', 'Pausing…'], ['resume', 'Resuming…'], ['drain', 'Draining…']]) {
        e[action] = h('button', { type: 'button', class: action + ' secondary', 'aria-describedby': 'p' + p.id }, action[0].toUpperCase() + action.slice(1));
        e[action].onclick = () => S.busy(e[action], busy, async () => {
          try {
            p.sale = (await call(`/api/v1/admin/products/${p.id}/${action}`, { method: 'POST' }) || {}).sale || p.sale;
            say.success(`${p.name}: sale is ${p.sale}.`);
          } catch (err) {
            say.error(err, `Could not ${action} ${p.name}.`);
          }
          render(p);
        });
      }
      e.root = h('li', { class: 'card', 'data-product-id': p.id, 'aria-labelledby': 'p' + p.id },
        h('div', { class: 'row between' }, e.name, h('span', null, 'Sale: ', e.sale)), e.meta, e.bar,
        h('p', null, e.available, ' of ', e.stock, ' available'), h('div', { class: 'row' }, e.pause, e.resume, e.drain));
    }
    const e = p.el, t = Date.now(), phase = S.phaseOf(p, t);
    S.setText(e.name, `#${p.id} ${p.name}`);
    S.setText(e.sale, p.sale);
    e.sale.dataset.state = p.sale;
    const when = phase === 'upcoming' ? 'starts in ' + S.formatDuration((p.startsAt - t) / 1000 || 0)
      : phase === 'open' && p.endsAt ? 'on sale, ends in ' + S.formatDuration((p.endsAt - t) / 1000) : phase;
    S.setText(e.meta, [S.formatMoney(p.priceCents), when, p.sold_out && 'sold out'].filter(Boolean).join(' · '));
    e.bar.max = p.stock || 1;
    e.bar.value = p.available || 0;
    S.setText(e.available, String(p.available ?? 0));
    S.setText(e.stock, String(p.stock ?? '?'));
    // The button for the state the sale is already in has nothing to do.
    e.pause.disabled = p.sale === 'paused';
    e.resume.disabled = p.sale === 'open';
    e.drain.disabled = p.sale === 'draining';
  }
  const cat = S.catalog({
    list: $('#products'),
    render,
    indicator: $('#live-status'),
    active: () => !!me,
    onError: (err) => say.error(err, 'Could not load the products.'),
  });

  /* Actor tree: polled every second while the tab is visible, updated in place by actor id. */
  let polling = false;
  async function pollActors() {
    clearTimeout(actorTimer);
    const status = $('#actors-status');
    if (!me || polling) return;
    if (document.hidden) return S.setText(status, 'Paused while the tab is hidden');
    polling = true;
    try {
      const tree = await call('/api/v1/admin/actors'), seen = new Set();
      if (me) sync($('#actor-tree'), [].concat((tree && tree.root) || tree || []), seen, {}); // unless signed out meanwhile
      for (const [id, a] of actors) if (!seen.has(id)) { a.li.remove(); actors.delete(id); }
      status.dataset.state = 'live';
      S.setText(status, `Live · ${actors.size} actors`);
    } catch (err) {
      if (status.dataset.state !== 'refused') say.error(err, 'Could not load the actor tree.'); // once, not every second
      status.dataset.state = 'refused';
      S.setText(status, 'Retrying…');
    }
    polling = false;
    if (me && !document.hidden) actorTimer = setTimeout(pollActors, 1000);
  }
  document.addEventListener('visibilitychange', pollActors);

  function sync(ul, nodes, seen, product) {
    const lis = [];
    for (const n of nodes) {
      const id = String(n.id ?? n.name);
      if (seen.has(id)) continue; // a duplicate id would fight over one element
      seen.add(id);
      lis.push(node(id, n, seen, product));
    }
    S.placeInOrder(ul, lis);
    while (ul.children.length > lis.length) ul.lastChild.remove();
  }

  function node(id, n, seen, product) {
    const kids = n.children || [], details = n.details || {};
    let a = actors.get(id);
    if (!a) {
      a = { kind: h('span', { class: 'kind' }), name: h('span', { class: 'name' }), status: h('span', { class: 'badge' }),
        bar: h('progress'), available: h('span', { class: 'available' }), metrics: h('span', { class: 'muted' }), dl: h('dl'), ul: h('ul') };
      a.details = h('details', null, h('summary', null, a.kind, ' ', a.name, ' ', a.status, ' ', a.bar, ' ', a.available, ' ', a.metrics), a.dl, a.ul);
      a.details.open = kids.length > 0; // branches start open, leaves closed; then the user's choice sticks
      a.li = h('li', { class: 'actor', 'data-actor-id': id }, a.details);
      actors.set(id, a);
    }
    a.li.dataset.kind = n.kind;
    a.li.dataset.status = n.status;
    S.setText(a.kind, String(n.kind).replace(/_/g, ' '));
    S.setText(a.name, String(n.name ?? id));
    S.setText(a.status, String(n.status));
    a.status.dataset.state = n.status === 'running' ? 'open' : 'paused';
    S.setText(a.metrics, `mailbox ${n.mailbox_depth ?? 0} · restarts ${n.restarts ?? 0}` + (n.backoff_ms != null ? ` · backoff ${n.backoff_ms} ms` : ''));
    // Products and shards show available units as a bar; a shard's against its product's whole stock.
    if (n.kind === 'product') product = details;
    const slice = n.kind === 'shard' || n.kind === 'product';
    a.bar.hidden = a.available.hidden = !slice;
    a.bar.max = Math.max(product.stock || 0, details.available || 0, 1);
    a.bar.value = details.available || 0;
    a.bar.setAttribute('aria-label', `${details.available} of ${product.stock} units available`);
    S.setText(a.available, String(details.available ?? 0));
    // Details as compact key: value pairs, rebuilt only when they change.
    const text = JSON.stringify(details);
    if (text !== a.text) {
      a.text = text;
      a.dl.replaceChildren(...Object.entries(details).flatMap(([k, v]) => [h('dt', null, k.replace(/_/g, ' ')), h('dd', null, compact(v))]));
    }
    sync(a.ul, kids, seen, product);
    a.dl.hidden = !a.dl.firstChild;
    a.ul.hidden = !kids.length;
    return a.li;
  }

  const compact = (v) => (v === null ? '—' : typeof v === 'object' ? JSON.stringify(v) : typeof v === 'number' ? String(Math.round(v * 100) / 100) : String(v));

  /* Dead letters */
  async function loadDeadLetters() {
    try {
      const items = S.listOf(await call('/api/v1/admin/dead-letters?limit=50'), 'items');
      $('#dead-letters tbody').replaceChildren(...items.map(row));
      if (!items.length) $('#dead-letters tbody').append(h('tr', null, h('td', { colspan: 8 }, 'No dead letters.')));
    } catch (err) {
      say.error(err, 'Could not load the dead letters.');
    }
  }

  function row(d) {
    const attempts = Array.isArray(d.attempts) ? d.attempts : [];
    const status = h('td', null, String(d.status ?? ''));
    const button = h('button', { type: 'button', class: 'reprocess secondary', 'aria-label': 'Reprocess dead letter ' + d.id }, 'Reprocess');
    button.disabled = d.status === 'reprocessed';
    button.onclick = () => S.busy(button, 'Sending…', async () => {
      try {
        await call(`/api/v1/admin/dead-letters/${d.id}/reprocess`, { method: 'POST' });
        status.textContent = 'reprocessing';
        button.disabled = true;
        say.success(`Dead letter ${d.id} sent for reprocessing.`);
        setTimeout(loadDeadLetters, 1500);
      } catch (err) {
        button.disabled = err.code === 'DEAD_LETTER_REPROCESSED';
        say.error(err, `Could not reprocess dead letter ${d.id}.`);
      }
    });
    return h('tr', { 'data-dead-letter-id': d.id }, h('td', { class: 'mono' }, String(d.id)), h('td', null, String(d.kind ?? '')),
      h('td', { class: 'mono', title: d.order_id }, String(d.order_id ?? '—').slice(0, 8)), h('td', null, String(d.reason ?? '')), status,
      h('td', null, S.formatTime(d.created_at)),
      h('td', null, attempts.length ? h('details', null, h('summary', null, attempts.length), h('ol', null, attempts.map((x) => h('li', null, compact(x))))) : 0),
      h('td', null, button));
  }
  $('#refresh-dead-letters').onclick = () => S.busy($('#refresh-dead-letters'), 'Refreshing…', loadDeadLetters);

  onSession();
})();
