/* Storefront: sale cards with live stock, buying, and the buyer's orders (live via /ws/orders). */
'use strict';
(() => {
  const S = Seckill, h = S.h, $ = (q) => document.querySelector(q), say = S.messenger($('#messages'));
  const auth = S.session('seckill.store');
  let me = auth.get(); // { token, username, role, expiresAt } or null
  const orders = new Map(); // order id -> record, its <li> in .el
  // Idempotency-Key of a purchase whose outcome we never learned: a retried click reuses it, so cannot reserve twice.
  const pendingKeys = new Map();
  const RANK = { reserved: 0, paid: 1, expired: 1, cancelled: 1, released: 2 }; // status only moves forward

  /* Account */
  const credentials = () => ({ username: $('#username').value.trim(), password: $('#password').value });
  $('#login-form').onsubmit = (e) => {
    e.preventDefault();
    S.busy($('#login-button'), 'Signing in…', signIn);
  };
  $('#register-button').onclick = () => S.busy($('#register-button'), 'Creating…', async () => {
    try {
      await S.api('/api/v1/auth/register', { method: 'POST', body: credentials() });
      await signIn();
    } catch (err) {
      say.error(err, 'Could not create the account.');
    }
  });
  async function signIn() {
    try {
      auth.set((me = await S.login(credentials().username, credentials().password)));
      $('#password').value = '';
      onSession();
      say.success(`Signed in as ${me.username}.`);
    } catch (err) {
      say.error(err, 'Sign-in failed.');
    }
  }
  $('#sign-out').onclick = () => {
    signOut('Signed out.');
    $('#username').focus(); // the button is gone; keep focus somewhere useful
  };
  function signOut(why) {
    auth.clear();
    me = null;
    pendingKeys.clear();
    onSession();
    say.info(why);
  }
  const sessionEnded = () => me && signOut('Your session has ended. Please sign in again.'); // on any 401

  let expiry;
  function onSession() {
    $('#login-form').hidden = !!me;
    $('#signed-in').hidden = $('#orders-live').hidden = !me;
    $('#signed-in-name').textContent = me ? me.username : '';
    clearTimeout(expiry);
    ordersSocket.stop();
    orders.clear();
    $('#orders').replaceChildren();
    if (me) {
      if (me.expiresAt) expiry = S.later(sessionEnded, me.expiresAt - Date.now());
      ordersSocket.start();
      loadOrders();
    }
    renderOrders();
    cat.products.forEach(renderProduct);
  }

  /* Products */
  function card(p) {
    const e = (p.el = {}), id = 'p' + p.id;
    for (const [k, tag, cls] of [['name', 'h3'], ['state', 'span', 'state badge'], ['price', 'p', 'price'], ['countdown', 'p', 'countdown'],
      ['ends', 'p', 'muted'], ['stock', 'p', 'stock-text'], ['limit', 'p', 'muted'], ['hint', 'p', 'hint']]) e[k] = h(tag, { class: cls });
    e.name.id = id;
    e.hint.id = id + 'h';
    e.bar = h('progress', { class: 'stock-bar', 'aria-label': 'Stock left' });
    e.buy = h('button', { type: 'button', class: 'buy', 'aria-describedby': id + 'h', onclick: () => buy(p) }, 'Buy now');
    e.root = h('article', { class: 'product card', 'data-product-id': p.id, 'aria-labelledby': id },
      h('div', { class: 'row between' }, e.name, e.state), e.price, e.countdown, e.ends, e.bar, e.stock, e.limit,
      h('div', { class: 'row' }, e.buy, e.hint));
  }

  // Idempotent: runs on each change, and every second for the countdowns.
  function renderProduct(p) {
    if (!p.el) card(p);
    const e = p.el, t = Date.now(), phase = S.phaseOf(p, t), stock = p.stock || 0;
    const left = Math.max(0, Math.min(p.available || 0, stock));
    const [state, label] = phase === 'ended' ? ['ended', 'Ended'] : phase === 'upcoming' ? ['upcoming', 'Upcoming']
      : p.sold_out || !left ? ['sold_out', 'Sold out'] : p.sale === 'paused' ? ['paused', 'Paused']
        : p.sale === 'draining' ? ['draining', 'Closing'] : ['open', 'On sale'];
    S.setText(e.name, p.name);
    S.setText(e.price, S.formatMoney(p.priceCents));
    S.setText(e.countdown, phase === 'upcoming' ? 'Starts in ' + S.formatDuration((p.startsAt - t) / 1000 || 0) : '');
    S.setText(e.ends, phase === 'open' && p.endsAt ? 'Ends in ' + S.formatDuration((p.endsAt - t) / 1000) : '');
    e.bar.max = stock || 1;
    e.bar.value = left;
    e.bar.dataset.low = left <= stock / 10;
    S.setText(e.stock, `${left} of ${stock} left`);
    S.setText(e.limit, p.limit ? `Limit ${p.limit} per customer` : '');
    S.setText(e.state, label);
    e.state.dataset.state = state;
    // Why the button is off, where the badge alone does not say.
    S.setText(e.hint, !me ? 'Sign in to buy.' : state === 'paused' || state === 'draining' ? 'Not taking orders right now.' : '');
    for (const el of [e.countdown, e.ends, e.limit, e.hint]) el.hidden = !el.textContent;
    e.buy.disabled = !me || state !== 'open';
    e.buy.setAttribute('aria-busy', !!p.buying);
    S.setText(e.buy, p.buying ? 'Reserving…' : 'Buy now');
    // For screen readers: state changes at once, stock at most every 20 s per product.
    const said = p.said || (p.said = { state, left, at: t });
    if (said.state !== state || (said.left !== left && t - said.at > 20000)) {
      $('#stock-announcer').textContent = `${p.name}: ${said.state !== state ? label : e.stock.textContent}.`;
      p.said = { state, left, at: t };
    }
    if (p.phase0 && p.phase0 !== phase) cat.reload(); // the window opened or closed on our clock: confirm
    p.phase0 = phase;
  }

  const cat = S.catalog({
    list: $('#products'),
    render: renderProduct,
    indicator: $('#live-status'),
    onError: (err) => say.error(err, 'Could not load the sales.'),
    onLoad(seen) {
      $('#products-status').textContent = 'No sales right now. Check back soon.';
      $('#products-status').hidden = seen.length > 0;
      renderOrders(); // product names may just have arrived
    },
  });

  async function buy(p) {
    if (!me || p.buying) return;
    const key = pendingKeys.get(p.id) || S.uuid();
    pendingKeys.set(p.id, key);
    p.buying = true;
    renderProduct(p);
    try {
      const headers = { 'Idempotency-Key': key };
      if (p.requires_token) {
        // A sale that requires a seckill token: asked for now, inside the window, spent by this one purchase.
        const pass = await S.api(`/api/v1/products/${p.id}/token`, { method: 'POST', token: me.token });
        headers['Seckill-Token'] = pass.token;
      }
      const r = await S.api(`/api/v1/products/${p.id}/purchase`, { method: 'POST', token: me.token, body: { quantity: 1 }, headers });
      pendingKeys.delete(p.id);
      const o = ingest({ product_id: p.id, status: 'reserved', ...r });
      o.reservedAt = o.reservedAt || Date.now();
      renderOrders();
      say.success(`Pay within ${S.formatDuration((o.payBefore - Date.now()) / 1000 || 0)} to get ${p.name}.`, 'Reserved!');
    } catch (err) {
      // Keep the key only when we cannot know whether the reservation happened.
      // (IDEMPOTENCY_KEY_IN_FLIGHT: the first try is still being recorded; the next click asks about it again.)
      const unknown = err.network || err.code === 'IDEMPOTENCY_KEY_IN_FLIGHT' || (err.status >= 500 && !/^SALE_/.test(err.code));
      if (!unknown) pendingKeys.delete(p.id);
      // The orders that use up the limit (one whose answer was lost among them) belong in the list, to pay.
      if (err.code === 'LIMIT_EXCEEDED') loadOrders();
      if (err.status === 401) sessionEnded();
      else say.error(err, unknown ? `No answer for ${p.name}; trying again is safe.` : `Couldn’t reserve ${p.name}.`);
    }
    p.buying = false;
    renderProduct(p);
  }

  /* Orders */
  async function loadOrders() {
    const token = me && me.token;
    try {
      const list = S.listOf(await S.api('/api/v1/orders', { token }), 'orders');
      if (me && me.token === token) list.forEach(ingest); // unless signed out meanwhile
      renderOrders();
    } catch (err) {
      if (err.status === 401) sessionEnded();
      else say.error(err, 'Could not load your orders.');
    }
  }

  function ingest(m) {
    const id = String(m.order_id ?? m.id ?? '');
    const o = orders.get(id) || { id, steps: [], quantity: 1 };
    if (!id) return o;
    orders.set(id, o);
    if (m.product_id != null) o.productId = String(m.product_id);
    o.quantity = S.num(m.quantity, o.quantity);
    o.payBefore = S.localTime(m.pay_before) ?? o.payBefore;
    o.reservedAt = S.localTime(m.reserved_at) ?? o.reservedAt;
    if (Array.isArray(m.steps)) o.steps.push(...m.steps.map((s) => s && s.step));
    if (RANK[m.status] >= 0 && !(RANK[m.status] < RANK[o.status])) o.status = m.status;
    if (o.status !== 'reserved') o.paying = false;
    // Refunds sit beside the status and never change it.
    o.refund = o.steps.includes('refunded') || m.refund === 'refunded' ? 'Refunded'
      : o.steps.includes('refund_requested') || m.refund === 'requested' ? 'Refund in progress' : '';
    return o;
  }

  const nameOf = (o) => (cat.products.get(o.productId) || {}).name || 'Product #' + o.productId;

  function onPush(m) {
    if (m.type !== 'order') return;
    const { status, refund } = orders.get(String(m.order_id)) || {};
    const o = ingest({ ...m, steps: [{ step: m.status }] });
    if (!status) setTimeout(loadOrders, 300); // new to us: fetch its pay-before time and the rest
    const news = { paid: 'Payment confirmed; it’s yours!', expired: 'The reservation expired.', cancelled: 'Order cancelled.' }[o.status];
    if (status && status !== o.status && news) say.info(news, nameOf(o) + ':');
    if (o.refund && o.refund !== refund) say.info(o.refund + ': the payment came after the order had closed.', nameOf(o) + ':');
    renderOrders();
  }

  function renderOrder(o) {
    if (!o.el) {
      const e = (o.el = {});
      for (const [k, cls] of [['name', 'name'], ['total', 'muted'], ['status', 'status badge'], ['deadline', 'deadline'], ['refund', 'refund']]) e[k] = h('span', { class: cls });
      e.pay = h('button', { type: 'button', class: 'pay', onclick: () => act(o, 'pay', 'Paying…') }, 'Pay');
      e.cancel = h('button', { type: 'button', class: 'cancel secondary', onclick: () => act(o, 'cancel', 'Cancelling…') }, 'Cancel');
      e.actions = h('div', { class: 'row' }, e.pay, e.cancel);
      e.root = h('li', { class: 'order card', 'data-order-id': o.id }, h('div', { class: 'row' }, e.name, e.total, e.status),
        h('p', { class: 'row' }, e.deadline, e.refund, h('span', { class: 'muted', title: o.id }, 'Order ' + o.id.slice(0, 8))), e.actions);
    }
    const e = o.el, p = cat.products.get(o.productId), name = nameOf(o), status = o.status || 'reserved';
    const reserved = status === 'reserved', secs = (o.payBefore - Date.now()) / 1000; // NaN when unknown
    S.setText(e.name, o.quantity > 1 ? `${name} × ${o.quantity}` : name);
    S.setText(e.total, p ? S.formatMoney(p.priceCents * o.quantity) : '');
    S.setText(e.status, status);
    e.status.dataset.status = status;
    S.setText(e.deadline, o.paying ? 'Confirming payment…' : secs <= 0 ? 'Payment window closed' : secs > 0 ? 'Pay within ' + S.formatDuration(secs) : '');
    S.setText(e.refund, o.refund);
    e.refund.hidden = !o.refund;
    e.deadline.hidden = e.actions.hidden = !reserved;
    e.pay.disabled = e.cancel.disabled = secs <= 0 || !!o.paying;
    e.pay.setAttribute('aria-label', 'Pay for ' + name);
    e.cancel.setAttribute('aria-label', 'Cancel order for ' + name);
  }

  function renderOrders() {
    const sorted = [...orders.values()].sort((a, b) => (b.reservedAt || 0) - (a.reservedAt || 0));
    sorted.forEach(renderOrder);
    S.placeInOrder($('#orders'), sorted.map((o) => o.el.root));
    S.setText($('#orders-status'), !me ? 'Sign in to see your orders.' : orders.size ? '' : 'No orders yet.');
    $('#orders-status').hidden = !$('#orders-status').textContent;
  }

  // Pay answers 202 and the "paid" push follows; should it never come, the order is read again.
  const act = (o, action, label) => S.busy(o.el[action], label, async () => {
    const name = nameOf(o);
    try {
      const r = (await S.api(`/api/v1/orders/${o.id}/${action}`, { method: 'POST', token: me.token })) || {};
      ingest(r.order || r);
      if (action === 'cancel') {
        ingest({ order_id: o.id, status: 'cancelled' });
        say.info(`Order for ${name} cancelled; the item is back on sale.`);
      } else if (o.status === 'paid') {
        say.success(`${name} is paid for.`);
      } else {
        o.paying = true;
        say.info(`Payment sent for ${name}. Waiting for confirmation…`);
        setTimeout(() => o.paying && loadOrders().then(() => { o.paying = false; renderOrders(); }), 8000);
      }
    } catch (err) {
      if (err.status === 401) return sessionEnded();
      say.error(err, `Could not ${action} the order for ${name}.`);
      if (err.code === 'ORDER_STATUS_CONFLICT') loadOrders();
    }
    renderOrders();
  });

  // The token rides as a subprotocol: browsers cannot set headers on a WebSocket.
  const ordersSocket = new S.LiveSocket({
    path: () => '/ws/orders',
    protocols: () => ['seckill.bearer', me.token],
    onOpen: loadOrders, // catch up on what happened while disconnected
    onMessage: onPush,
    onRefused: loadOrders, // a 401 there signs out
    indicator: $('#orders-live'),
  });

  onSession();
  cat.load();
  setInterval(() => orders.forEach(renderOrder), 1000); // pay-before countdowns
})();
