// Atomic Flow dashboard. Plain ES2020, no dependencies.
//
// One WebSocket (/ws) delivers a JSON frame per tick; the socket handler only
// stores the latest frame. Everything visible is drawn in requestAnimationFrame
// from that latest frame, so a burst of frames costs one render.
'use strict';

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const nf = new Intl.NumberFormat('en-US');
  const nf1 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

  // ---------------------------------------------------------------- auth

  const TOKEN_KEY = 'atomicflow.token';
  const token = (() => {
    const fromURL = new URLSearchParams(location.search).get('token');
    try {
      if (fromURL) sessionStorage.setItem(TOKEN_KEY, fromURL);
      return fromURL || sessionStorage.getItem(TOKEN_KEY) || '';
    } catch (_) {
      return fromURL || '';
    }
  })();

  // api calls the master's JSON API; it throws an Error carrying the server's
  // error message ({"error":{"code","message"}}) when the call fails.
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = 'Bearer ' + token;
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new Error('network error: ' + e.message);
    }
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
    if (!resp.ok) {
      const msg = (data && data.error && data.error.message) || text.trim() || resp.statusText;
      throw new Error(`HTTP ${resp.status}: ${msg}`);
    }
    return data;
  }

  // ---------------------------------------------------------------- helpers

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function clamp(x, lo, hi) { return Math.max(lo, Math.min(hi, x)); }

  function fmtDuration(ms) {
    if (!ms || ms < 0) return '–';
    const s = Math.floor(ms / 1000);
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
    const h = Math.floor(m / 60);
    if (h < 24) return `${h}h ${String(m % 60).padStart(2, '0')}m`;
    return `${Math.floor(h / 24)}d ${h % 24}h`;
  }

  function fmtAge(ms) {
    return ms < 1000 ? `${ms} ms` : `${nf1.format(ms / 1000)} s`;
  }

  function fmtMiB(bytes) {
    return bytes ? `${nf1.format(bytes / 1048576)} MiB` : '–';
  }

  function fmtRate(x) {
    return x >= 100 ? nf.format(Math.round(x)) : nf1.format(x);
  }

  function fmtClock(iso) {
    const d = new Date(iso);
    return isNaN(d) ? '' : d.toLocaleTimeString('en-GB', { hour12: false });
  }

  // The colour of a worker's tasks: hues a golden angle apart, by slot.
  function workerHue(slot) { return (slot * 137.508 + 195) % 360; }
  function workerColor(slot, alpha = 1) {
    return `hsla(${workerHue(slot).toFixed(1)}, 85%, 62%, ${alpha})`;
  }

  let toastTimer = 0;
  function toast(msg, isError) {
    const el = $('#toast');
    el.textContent = msg;
    el.classList.toggle('error', !!isError);
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, isError ? 6000 : 2500);
  }

  // ---------------------------------------------------------------- state

  const HISTORY_S = 60;
  const MAX_EVENTS = 200;
  const state = {
    latest: null,  // the newest frame
    dirty: false,  // latest not rendered yet
    history: [],   // per-second buckets {sec, sum, n} of completed/s, last 60 s
    lastEventSeq: 0,    // newest event on the page
    pendingEvents: [],  // events received and not rendered yet, oldest first
    queuedEventSeq: 0,  // newest event received
    resetEvents: false, // a new master: clear the list before the next render
  };

  // queueEvents keeps the events of every frame until the next render: a
  // frame carries only the events of the last couple of seconds (the first
  // frame of a connection has the 50 newest), so events must not be taken
  // from the latest frame alone when several arrive between two renders
  // (a background tab). Events are de-duplicated by seq.
  function queueEvents(f) {
    const evs = f.events || [];
    const newMaster = (state.latest && f.seq < state.latest.seq) ||
      (evs.length > 0 && evs[evs.length - 1].seq < state.queuedEventSeq);
    if (newMaster) { // its frames and events count from 1 again
      state.pendingEvents = [];
      state.queuedEventSeq = 0;
      state.resetEvents = true;
    }
    for (const e of evs) {
      if (e.seq <= state.queuedEventSeq) continue;
      state.queuedEventSeq = e.seq;
      state.pendingEvents.push(e);
    }
    if (state.pendingEvents.length > MAX_EVENTS) state.pendingEvents.splice(0, state.pendingEvents.length - MAX_EVENTS);
  }

  function onFrame(f) {
    queueEvents(f);
    state.latest = f;
    state.dirty = true;
    const h = state.history;
    const sec = Math.floor(f.time_ms / 1000);
    const v = f.rates ? f.rates.completed_per_s : 0;
    const last = h[h.length - 1];
    if (last && last.sec === sec) {
      last.sum += v;
      last.n++;
    } else {
      if (last && sec < last.sec) h.length = 0; // the master's clock went back
      h.push({ sec, sum: v, n: 1 });
    }
    while (h.length && h[0].sec <= sec - HISTORY_S) h.shift();
  }

  // ---------------------------------------------------------------- connection

  const BACKOFF_MIN = 250;
  const BACKOFF_MAX = 5000;
  let backoff = BACKOFF_MIN;

  function setConn(ok, detail) {
    const el = $('#conn-status');
    el.classList.toggle('disconnected', !ok);
    el.classList.remove('connecting');
    setText(el, ok ? 'connected' : 'disconnected, reconnecting…');
    el.title = detail || '';
    document.body.classList.toggle('offline', !ok);
  }

  let socket = null;
  let lastMessage = 0;  // performance.now() of the last frame
  let frameGap = 100;   // ms between the last two frames, as the server stamped them

  function connect() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/ws`);
    } catch (e) {
      retry();
      return;
    }
    socket = ws;
    ws.onopen = () => {
      backoff = BACKOFF_MIN;
      lastMessage = performance.now();
      setConn(true);
    };
    ws.onmessage = (ev) => {
      lastMessage = performance.now();
      try {
        const f = JSON.parse(ev.data);
        if (state.latest && f.time_ms > state.latest.time_ms) frameGap = f.time_ms - state.latest.time_ms;
        onFrame(f);
      } catch (e) {
        console.error('atomicflow: bad frame', e);
      }
    };
    ws.onclose = () => {
      if (socket === ws) socket = null;
      retry();
    };
  }

  // retry reconnects after an exponential delay (250 ms doubling to 5 s) with
  // ±20 % jitter, so reloading browsers do not arrive in lockstep.
  function retry() {
    const delay = Math.round(clamp(backoff * (0.8 + Math.random() * 0.4), BACKOFF_MIN, BACKOFF_MAX));
    backoff = Math.min(backoff * 2, BACKOFF_MAX);
    setConn(false, `retrying in ${delay} ms`);
    setTimeout(connect, delay);
  }

  // A connection that stays open but carries no frames (a half-open TCP
  // connection, a hung server) is closed, so that the reconnect loop runs.
  setInterval(() => {
    if (socket && socket.readyState === WebSocket.OPEN &&
        performance.now() - lastMessage > Math.max(5000, 5 * frameGap)) {
      socket.close();
    }
  }, 1000);

  // ---------------------------------------------------------------- header

  const statEls = new Map();
  document.querySelectorAll('.stat[data-counter]').forEach((el) => {
    statEls.set(el.dataset.counter, $('.value', el));
  });

  function renderHeader(f) {
    const c = f.counters || {};
    for (const [name, el] of statEls) setText(el, nf.format(c[name] || 0));
    const r = f.rates || {};
    setText($('#rate-completed'), fmtRate(r.completed_per_s || 0));
    setText($('#rate-failed'), fmtRate(r.failed_per_s || 0));
    setText($('#rate-submitted'), fmtRate(r.submitted_per_s || 0));
  }

  // fitCanvas sizes a canvas's backing store to its CSS box × devicePixelRatio
  // and returns its CSS size, or null when it has no size yet.
  function fitCanvas(canvas, ctx) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.floor(canvas.clientWidth);
    const h = Math.floor(canvas.clientHeight);
    if (w <= 0 || h <= 0) return null;
    const bw = Math.round(w * dpr);
    const bh = Math.round(h * dpr);
    let resized = false;
    if (canvas.width !== bw || canvas.height !== bh) {
      canvas.width = bw;
      canvas.height = bh;
      resized = true;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return { w, h, dpr, resized };
  }

  const spark = $('#sparkline');
  const sparkCtx = spark.getContext('2d');

  function renderSparkline(f) {
    const box = fitCanvas(spark, sparkCtx);
    if (!box) return;
    const { w, h } = box;
    const ctx = sparkCtx;
    ctx.clearRect(0, 0, w, h);
    const end = Math.floor(f.time_ms / 1000);
    const pts = state.history.map((b) => ({ s: b.sec, v: b.sum / b.n }));
    let peak = 1;
    for (const p of pts) peak = Math.max(peak, p.v);
    peak *= 1.15;
    const x = (s) => ((s - (end - HISTORY_S + 1)) / (HISTORY_S - 1)) * (w - 4) + 2;
    const y = (v) => h - 2 - (v / peak) * (h - 6);

    ctx.strokeStyle = 'rgba(140, 160, 190, 0.12)';
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let i = 1; i < 4; i++) {
      const gy = Math.round((h * i) / 4) + 0.5;
      ctx.moveTo(0, gy);
      ctx.lineTo(w, gy);
    }
    ctx.stroke();
    if (pts.length < 2) return;

    const line = new Path2D();
    pts.forEach((p, i) => (i ? line.lineTo(x(p.s), y(p.v)) : line.moveTo(x(p.s), y(p.v))));
    const last = pts[pts.length - 1];
    const area = new Path2D(line);
    area.lineTo(x(last.s), h);
    area.lineTo(x(pts[0].s), h);
    area.closePath();
    const grad = ctx.createLinearGradient(0, 0, 0, h);
    grad.addColorStop(0, 'rgba(61, 220, 132, 0.35)');
    grad.addColorStop(1, 'rgba(61, 220, 132, 0)');
    ctx.fillStyle = grad;
    ctx.fill(area);
    ctx.strokeStyle = '#3ddc84';
    ctx.lineWidth = 1.5;
    ctx.lineJoin = 'round';
    ctx.stroke(line);
    ctx.fillStyle = '#b8ffd6';
    ctx.beginPath();
    ctx.arc(x(last.s), y(last.v), 2.5, 0, Math.PI * 2);
    ctx.fill();
    spark.title = `completed/s, last 60 s (peak ${fmtRate(peak / 1.15)})`;
  }

  // ---------------------------------------------------------------- workers

  const CARD_HTML = `
    <div class="wc-head">
      <span class="swatch"></span>
      <span class="wc-title">worker <b class="slot-no"></b></span>
      <span class="state"></span>
    </div>
    <div class="wc-ids">
      <span>pid <b class="pid"></b></span>
      <span>gen <b class="generation"></b></span>
      <span>up <b class="uptime"></b></span>
    </div>
    <div class="load">
      <div class="bar"><div class="bar-fill"></div></div>
      <span class="inflight"></span>
    </div>
    <dl class="wc-stats">
      <div><dt>completed</dt><dd class="completed"></dd></div>
      <div><dt>failed</dt><dd class="failed"></dd></div>
      <div><dt>restarts</dt><dd class="restarts"></dd></div>
      <div><dt>RSS</dt><dd class="rss"></dd></div>
      <div><dt>CPU</dt><dd class="cpu"></dd></div>
      <div><dt>heartbeat</dt><dd class="heartbeat"></dd></div>
    </dl>
    <div class="wc-note"></div>
    <div class="wc-error" hidden></div>
    <div class="wc-actions">
      <button type="button" class="kill" title="SIGKILL the worker process">Kill</button>
      <button type="button" class="restart" title="drain and replace the worker">Restart</button>
    </div>`;

  const cards = new Map(); // slot -> {el, fields}
  const workersEl = $('#workers');

  function makeCard(slot) {
    const el = document.createElement('div');
    el.className = 'worker-card';
    el.dataset.slot = String(slot);
    el.innerHTML = CARD_HTML;
    const q = (s) => $(s, el);
    const card = {
      el,
      slotNo: q('.slot-no'), state: q('.state'), pid: q('.pid'), generation: q('.generation'),
      uptime: q('.uptime'), inflight: q('.inflight'), barFill: q('.bar-fill'),
      completed: q('.completed'), failed: q('.failed'), restarts: q('.restarts'),
      rss: q('.rss'), cpu: q('.cpu'), heartbeat: q('.heartbeat'), note: q('.wc-note'),
      error: q('.wc-error'), kill: q('button.kill'), restart: q('button.restart'),
    };
    setText(card.slotNo, String(slot));
    q('.swatch').style.background = workerColor(slot);
    card.kill.addEventListener('click', () => control(card, slot, 'kill'));
    card.restart.addEventListener('click', () => control(card, slot, 'restart'));
    // keep cards in slot order
    let before = null;
    for (const [s, c] of cards) if (s > slot && (!before || s < Number(before.dataset.slot))) before = c.el;
    workersEl.insertBefore(el, before);
    cards.set(slot, card);
    return card;
  }

  async function control(card, slot, action) {
    card.kill.disabled = card.restart.disabled = true;
    card.error.hidden = true;
    try {
      await api('POST', `/api/v1/workers/${slot}/${action}`);
      toast(`${action} sent to worker ${slot}`);
    } catch (e) {
      card.error.textContent = `${action} failed: ${e.message}`;
      card.error.hidden = false;
      toast(`${action} worker ${slot}: ${e.message}`, true);
    } finally {
      card.kill.disabled = card.restart.disabled = false;
    }
  }

  function exitText(code) {
    return code < 0 ? `signal ${-code}` : `code ${code}`;
  }

  function updateCard(card, w) {
    if (card.el.dataset.state !== w.state) card.el.dataset.state = w.state;
    setText(card.state, w.state);
    setText(card.pid, w.pid ? String(w.pid) : '–');
    setText(card.generation, String(w.generation));
    setText(card.uptime, fmtDuration(w.uptime_ms));
    setText(card.inflight, `${nf.format(w.in_flight)} / ${nf.format(w.capacity)}`);
    const frac = w.capacity > 0 ? clamp(w.in_flight / w.capacity, 0, 1) : 0;
    const width = `${(frac * 100).toFixed(1)}%`;
    if (card.barFill.style.width !== width) card.barFill.style.width = width;
    setText(card.completed, nf.format(w.completed));
    setText(card.failed, nf.format(w.failed));
    setText(card.restarts, nf.format(w.restarts));
    setText(card.rss, fmtMiB(w.rss_bytes));
    setText(card.cpu, `${nf1.format(w.cpu_percent)} %`);
    const alive = w.state === 'starting' || w.state === 'ready' || w.state === 'draining';
    setText(card.heartbeat, alive ? fmtAge(w.heartbeat_age_ms) : '–');
    card.heartbeat.classList.toggle('stale', w.heartbeat_age_ms > 3000 && w.state === 'ready');
    let note = '';
    if (w.state === 'backoff') note = w.backoff_ms > 0 ? `forks again in ${fmtAge(w.backoff_ms)}` : 'forking again';
    if ((w.restarts > 0 || w.state === 'dead' || w.state === 'backoff') && w.generation > 0) {
      note = (note ? note + ' · ' : '') + `last exit ${exitText(w.last_exit)}`;
    }
    setText(card.note, note);
  }

  function renderWorkers(f) {
    const seen = new Set();
    let ready = 0;
    for (const w of f.workers || []) {
      seen.add(w.slot);
      if (w.state === 'ready') ready++;
      updateCard(cards.get(w.slot) || makeCard(w.slot), w);
    }
    for (const [slot, card] of cards) {
      if (!seen.has(slot)) {
        card.el.remove();
        cards.delete(slot);
      }
    }
    setText($('#workers-summary'), `${ready} of ${seen.size} ready`);
  }

  // ---------------------------------------------------------------- events

  const eventsEl = $('#events');

  function renderEvents() {
    if (state.resetEvents) {
      state.resetEvents = false;
      eventsEl.textContent = '';
      state.lastEventSeq = 0;
    }
    const evs = state.pendingEvents;
    if (!evs.length) return;
    state.pendingEvents = [];
    for (const e of evs) { // oldest first; prepend, so the newest ends on top
      if (e.seq <= state.lastEventSeq) continue;
      state.lastEventSeq = e.seq;
      const li = document.createElement('li');
      li.dataset.seq = String(e.seq);
      li.dataset.kind = e.kind;
      const time = document.createElement('time');
      time.textContent = fmtClock(e.time);
      time.dateTime = e.time;
      const kind = document.createElement('span');
      kind.className = 'kind';
      kind.textContent = e.kind;
      const slot = document.createElement('span');
      slot.className = 'ev-slot';
      slot.textContent = `w${e.slot}`;
      slot.style.color = workerColor(e.slot);
      const msg = document.createElement('span');
      msg.className = 'msg';
      msg.textContent = e.message;
      msg.title = e.message;
      li.append(time, kind, slot, msg);
      eventsEl.prepend(li);
    }
    while (eventsEl.childElementCount > MAX_EVENTS) eventsEl.lastElementChild.remove();
    setText($('#events-count'), `#${state.lastEventSeq}`);
  }

  // ---------------------------------------------------------------- task field

  // Level of detail: cells shrink from 40 px blocks (a few tasks) to 4 px
  // star dust (thousands) so that FILL² of the field is covered at most.
  const CELL_MIN = 4;
  const CELL_MAX = 40;
  const FILL = 0.8;
  const DUST = 6; // at or below this size, cells are glowing, twinkling dots

  const field = $('#task-field');
  const fieldCtx = field.getContext('2d');
  const fieldCount = $('#field-count');
  const legendEl = $('#field-legend');
  let fieldKey = '';

  function cellSizeFor(total, w, h) {
    let s = clamp(Math.floor(Math.sqrt((w * h) / Math.max(total, 1)) * FILL), CELL_MIN, CELL_MAX);
    while (s > CELL_MIN && Math.floor(w / s) * Math.floor(h / s) < total) s--; // grid rounding
    return s;
  }

  // share splits cap cells among the workers in proportion to their tasks
  // (largest remainder), for when there are more tasks than cells.
  function share(counts, total, cap) {
    if (total <= cap) return counts.slice();
    const exact = counts.map((n) => (n * cap) / total);
    const out = exact.map(Math.floor);
    let left = cap - out.reduce((a, b) => a + b, 0);
    const order = exact.map((x, i) => [x - Math.floor(x), i]).sort((a, b) => b[0] - a[0]);
    for (let k = 0; left > 0 && k < order.length; k++, left--) out[order[k][1]]++;
    return out;
  }

  // hslToRgb converts a CSS hsl() colour to [r, g, b] in 0..255.
  function hslToRgb(hDeg, sPct, lPct) {
    const s = sPct / 100;
    const l = lPct / 100;
    const k = (n) => (n + hDeg / 30) % 12;
    const a = s * Math.min(l, 1 - l);
    const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, 9 - k(n), 1));
    return [Math.round(f(0) * 255), Math.round(f(8) * 255), Math.round(f(4) * 255)];
  }

  // Star dust is written straight into an ImageData: a few milliseconds for
  // tens of thousands of dots, with or without a GPU.
  const LEVELS = 64;
  const dust = {
    img: null, u32: null, // the frame buffer, device pixels
    kernels: new Map(),   // cell px -> Float32Array glow kernel
    luts: new Map(),      // slot -> Uint32Array of LEVELS premixed RGBA words
    phases: new Float32Array(0),
    last: 0,              // time of the last dust frame
  };

  function dustKernel(k) {
    let kern = dust.kernels.get(k);
    if (kern) return kern;
    kern = new Float32Array(k * k);
    const c = (k - 1) / 2;
    const r = k / 2;
    for (let y = 0; y < k; y++) {
      for (let x = 0; x < k; x++) {
        const d = Math.hypot(x - c, y - c) / r;
        kern[y * k + x] = Math.min(1, 1.25 * Math.exp(-d * d * 3.2));
      }
    }
    dust.kernels.set(k, kern);
    return kern;
  }

  // dustLUT maps a glow level to a little-endian RGBA word: the worker's
  // colour, going white-hot at the core.
  function dustLUT(slot) {
    let lut = dust.luts.get(slot);
    if (lut) return lut;
    const [r, g, b] = hslToRgb(workerHue(slot), 85, 62);
    lut = new Uint32Array(LEVELS);
    for (let i = 1; i < LEVELS; i++) {
      const v = i / (LEVELS - 1);
      const white = Math.max(0, v - 0.7) / 0.3 * 0.75;
      const mix = (c) => Math.round(c + (255 - c) * white);
      lut[i] = ((Math.round(v * 255) << 24) | (mix(b) << 16) | (mix(g) << 8) | mix(r)) >>> 0;
    }
    dust.luts.set(slot, lut);
    return lut;
  }

  function cellPhases(n) {
    if (dust.phases.length < n) {
      const p = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        let x = Math.imul(i ^ 0x9e3779b9, 2654435761) >>> 0;
        x = Math.imul(x ^ (x >>> 15), 2246822519) >>> 0;
        p[i] = ((x ^ (x >>> 13)) >>> 0) / 4294967296;
      }
      dust.phases = p;
    }
    return dust.phases;
  }

  function drawDust(workers, drawn, g, now) {
    const bw = field.width;
    const bh = field.height;
    if (!dust.img || dust.img.width !== bw || dust.img.height !== bh) {
      dust.img = fieldCtx.createImageData(bw, bh);
      dust.u32 = new Uint32Array(dust.img.data.buffer);
    }
    const u32 = dust.u32;
    u32.fill(0);
    const k = Math.max(2, Math.floor(g.size * g.dpr));
    const kern = dustKernel(k);
    const phases = cellPhases(g.cap);
    let i = 0;
    workers.forEach((wk, wi) => {
      const lut = dustLUT(wk.slot);
      for (let n = drawn[wi]; n > 0; n--, i++) {
        const ph = phases[i];
        const tw = 0.5 + 0.5 * Math.sin(now / (380 + ph * 1200) + ph * 6.283);
        const gain = (0.3 + 0.7 * tw * tw) * (LEVELS - 1);
        const x0 = Math.floor((g.ox + (i % g.cols) * g.size) * g.dpr);
        const y0 = Math.floor((g.oy + Math.floor(i / g.cols) * g.size) * g.dpr);
        for (let y = 0; y < k; y++) {
          const py = y0 + y;
          if (py >= bh) break;
          let idx = py * bw + x0;
          for (let x = 0; x < k; x++, idx++) {
            const lvl = (kern[y * k + x] * gain) | 0;
            if (lvl > 0) u32[idx] = lut[lvl];
          }
        }
      }
    });
    fieldCtx.putImageData(dust.img, 0, 0);
  }

  function drawBlocks(workers, drawn, g) {
    const ctx = fieldCtx;
    const { size, cols } = g;
    ctx.clearRect(0, 0, g.w, g.h);
    const gap = size >= 16 ? 3 : 1;
    const inner = size - gap;
    const radius = Math.min(6, inner / 4);
    let i = 0;
    workers.forEach((wk, wi) => {
      const n = drawn[wi];
      if (!n) return;
      ctx.beginPath();
      for (let k = 0; k < n; k++, i++) {
        const x = g.ox + (i % cols) * size + gap / 2;
        const y = g.oy + Math.floor(i / cols) * size + gap / 2;
        if (size >= 12 && ctx.roundRect) ctx.roundRect(x, y, inner, inner, radius);
        else ctx.rect(x, y, inner, inner);
      }
      if (size >= 20) {
        ctx.shadowColor = workerColor(wk.slot, 0.5);
        ctx.shadowBlur = 12;
      }
      const grad = ctx.createLinearGradient(0, 0, 0, g.h);
      grad.addColorStop(0, workerColor(wk.slot, 0.95));
      grad.addColorStop(1, workerColor(wk.slot, 0.72));
      ctx.fillStyle = grad;
      ctx.fill();
      ctx.shadowBlur = 0;
      ctx.shadowColor = 'transparent';
    });
  }

  function drawField(f, now) {
    const box = fitCanvas(field, fieldCtx);
    if (!box) return;
    const { w, h, dpr } = box;
    const workers = (f && f.workers) || [];
    const counts = workers.map((wk) => Math.max(0, wk.in_flight | 0));
    const total = counts.reduce((a, b) => a + b, 0);
    const size = cellSizeFor(total, w, h);
    const cols = Math.max(1, Math.floor(w / size));
    const rows = Math.max(1, Math.floor(h / size));
    const cap = cols * rows;
    const drawn = share(counts, total, cap);
    const drawnTotal = drawn.reduce((a, b) => a + b, 0);
    const isDust = size <= DUST;
    const g = {
      w, h, dpr, size, cols, cap,
      ox: Math.floor((w - cols * size) / 2),
      oy: Math.floor((h - rows * size) / 2),
    };

    // Blocks are redrawn only when something changed; dust twinkles at ~30 fps.
    const key = `${w}x${h}@${dpr}:${size}:${drawn.join(',')}:${workers.map((x) => x.slot).join(',')}`;
    const changed = key !== fieldKey || box.resized;
    if (!changed && (!isDust || now - dust.last < 33)) return;
    fieldKey = key;
    const t0 = performance.now();
    if (isDust) {
      dust.last = now;
      drawDust(workers, drawn, g, now);
    } else {
      drawBlocks(workers, drawn, g);
    }
    field.dataset.drawMs = (performance.now() - t0).toFixed(1);
    field.dataset.cellSize = String(size);
    field.dataset.drawn = String(drawnTotal);
    field.dataset.total = String(total);
    if (!changed) return;
    field.classList.toggle('idle', total === 0);
    if (total === 0) {
      setText(fieldCount, 'idle — no tasks in flight');
    } else if (drawnTotal < total) {
      setText(fieldCount, `${nf.format(total)} in flight · showing ${nf.format(drawnTotal)}`);
    } else {
      setText(fieldCount, `${nf.format(total)} in flight`);
    }
    setText($('#field-info'), `${size} px cells · ${nf.format(drawnTotal)} drawn`);
  }

  function renderLegend(f) {
    const parts = (f.workers || []).map((w) =>
      `<span class="lg"><i style="background:${workerColor(w.slot)}"></i>w${w.slot} <b>${nf.format(w.in_flight)}</b></span>`);
    const html = parts.join('');
    if (legendEl.dataset.html !== html) {
      legendEl.innerHTML = html; // only numbers and our own colours: safe
      legendEl.dataset.html = html;
    }
  }

  // ---------------------------------------------------------------- progress

  // The frame lists up to 20 running tasks that reported progress (sdk
  // Task.Progress), the most recently updated first; the panel is hidden
  // when there are none (or the master sends none).
  const progressPanel = $('#progress-panel');
  const progressEl = $('#progress');
  const progressRows = new Map(); // task id -> row

  function makeProgressRow(p) {
    const li = document.createElement('li');
    li.className = 'pg';
    li.dataset.id = p.id;
    li.innerHTML = `<div class="pg-head"><span class="ev-slot"></span><span class="pg-kind"></span>` +
      `<span class="pg-id"></span><span class="pg-pct"></span></div>` +
      `<div class="bar"><div class="bar-fill"></div></div><div class="pg-msg"></div>`;
    const row = {
      li, slotEl: $('.ev-slot', li), kind: $('.pg-kind', li), id: $('.pg-id', li), pct: $('.pg-pct', li),
      fill: $('.bar-fill', li), msg: $('.pg-msg', li),
    };
    setText(row.id, p.id.length > 8 ? '…' + p.id.slice(-8) : p.id);
    row.id.title = p.id;
    progressRows.set(p.id, row);
    return row;
  }

  function renderProgress(f) {
    const list = Array.isArray(f.progress) ? f.progress : [];
    if (progressPanel.hidden !== (list.length === 0)) progressPanel.hidden = list.length === 0;
    const seen = new Set();
    list.forEach((p, i) => {
      seen.add(p.id);
      const row = progressRows.get(p.id) || makeProgressRow(p);
      const frac = clamp(Number(p.fraction) || 0, 0, 1);
      setText(row.slotEl, `w${p.slot}`);
      row.slotEl.style.color = workerColor(p.slot);
      setText(row.kind, p.kind);
      setText(row.pct, `${Math.round(frac * 100)}%`);
      const width = `${(frac * 100).toFixed(1)}%`;
      if (row.fill.style.width !== width) row.fill.style.width = width;
      setText(row.msg, p.message || '');
      row.msg.title = p.message || '';
      row.li.dataset.fraction = String(frac);
      if (progressEl.children[i] !== row.li) progressEl.insertBefore(row.li, progressEl.children[i] || null);
    });
    for (const [id, row] of progressRows) {
      if (!seen.has(id)) {
        row.li.remove();
        progressRows.delete(id);
      }
    }
    setText($('#progress-count'), list.length ? `${list.length} running` : '');
  }

  // ---------------------------------------------------------------- load panel

  const CHUNK = 10000;
  const kindSel = $('#load-kind');
  const durInput = $('#load-duration');
  const durLabel = $('#load-duration-label');
  const loadStatus = $('#load-status');
  const submitBtn = $('#load-submit');

  function syncKind() {
    const kind = kindSel.value;
    setText(durLabel, kind === 'cpu' ? 'rounds' : 'duration ms');
    durInput.disabled = !(kind === 'sleep' || kind === 'cpu');
  }
  // The kinds the workers serve come with the frames; until one carries
  // them (or when the master sends none) the page offers the built-in ones.
  let kindsKey = '';
  function renderKinds(f) {
    const kinds = Array.isArray(f.kinds) ? f.kinds.filter((k) => typeof k === 'string' && k) : [];
    if (!kinds.length) return;
    const key = kinds.join('\n');
    if (key === kindsKey) return;
    kindsKey = key;
    const cur = kindSel.value;
    kindSel.replaceChildren(...kinds.map((k) => new Option(k, k)));
    kindSel.value = kinds.includes(cur) ? cur : (kinds.includes('sleep') ? 'sleep' : kinds[0]);
    kindSel.dataset.source = 'master';
    syncKind();
  }

  kindSel.addEventListener('change', () => {
    if (kindSel.value === 'cpu' && durInput.value === '500') durInput.value = '100000';
    if (kindSel.value === 'sleep' && durInput.value === '100000') durInput.value = '500';
    syncKind();
  });
  syncKind();

  function payloadFor(kind, dur, i) {
    switch (kind) {
      case 'sleep': return { ms: dur };
      case 'cpu': return { rounds: dur };
      case 'fail': return { message: 'load test failure' };
      default: return { n: i };
    }
  }

  function setLoadStatus(text, cls) {
    loadStatus.textContent = text;
    loadStatus.className = 'load-status' + (cls ? ' ' + cls : '');
  }

  $('#load-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const kind = kindSel.value;
    const count = Math.floor(Number($('#load-count').value));
    const dur = Math.max(0, Math.floor(Number(durInput.value) || 0));
    if (!(count >= 1)) {
      setLoadStatus('error: count must be at least 1', 'error');
      return;
    }
    submitBtn.disabled = true;
    let sent = 0;
    try {
      while (sent < count) {
        const n = Math.min(CHUNK, count - sent);
        const tasks = new Array(n);
        for (let k = 0; k < n; k++) tasks[k] = { kind, payload: payloadFor(kind, dur, sent + k) };
        setLoadStatus(`submitting… ${nf.format(sent)} / ${nf.format(count)}`);
        const res = await api('POST', '/api/v1/tasks/batch', { tasks });
        sent += res && Array.isArray(res.ids) ? res.ids.length : n;
      }
      setLoadStatus(`submitted ${nf.format(sent)}`, 'ok');
    } catch (e) {
      setLoadStatus(`error: ${e.message}` + (sent ? ` (${nf.format(sent)} submitted before)` : ''), 'error');
    } finally {
      submitBtn.disabled = false;
    }
  });

  // ---------------------------------------------------------------- render loop

  function frame(now) {
    const f = state.latest;
    if (f && state.dirty) {
      state.dirty = false;
      renderHeader(f);
      // The seq of the frame the page shows, so that tests (and a person in
      // the inspector) can tell two pages showing the same frame.
      document.body.dataset.frameSeq = String(f.seq);
      renderSparkline(f);
      renderWorkers(f);
      renderEvents();
      renderProgress(f);
      renderKinds(f);
      renderLegend(f);
    }
    drawField(f, now);
    requestAnimationFrame(frame);
  }

  new ResizeObserver(() => {
    fieldKey = '';
    if (state.latest) state.dirty = true;
  }).observe(field);

  requestAnimationFrame(frame);
  connect();
})();
