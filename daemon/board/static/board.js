/* The board page: one EventSource for live data, a watchdog that never lets a dead stream look
   like a quiet suite, and actions sent as the logged-in user (cookie + CSRF header). */
"use strict";
(() => {
  const WATCHDOG_MS = 4000;       // the server pings every second
  const SOUND_REPEAT_MS = 15000;  // while a HIGH alarm is active and not acknowledged
  const $ = (id) => document.getElementById(id);
  const state = {
    meta: null, sections: null, session: null, offset: 0, lastMsg: 0, sseOpen: false, lostAt: null,
    seen: new Set(), announcedFirst: false, needLogin: false,
  };
  const now = () => Date.now() + state.offset;
  const tz = () => (state.meta && state.meta.timezone) || undefined;

  function syncClock(t) {
    const s = Date.parse(t);
    if (!isNaN(s)) state.offset = s - Date.now();
  }

  // -- live stream -------------------------------------------------------
  let es = null;
  function connect() {
    if (es) es.close();
    es = new EventSource("/events");
    es.addEventListener("snapshot", (e) => {
      const d = JSON.parse(e.data);
      syncClock(d.t);
      state.meta = d.meta;
      state.sections = d.sections;
      state.lastMsg = Date.now();
      state.sseOpen = true;
      state.lostAt = null;
      state.needLogin = false;
      applyMeta();
      renderAll(Object.keys(d.sections));
    });
    es.addEventListener("patch", (e) => {
      const d = JSON.parse(e.data);
      syncClock(d.t);
      state.lastMsg = Date.now();
      if (!state.sections) return;
      Object.assign(state.sections, d.sections);
      renderAll(Object.keys(d.sections));
    });
    es.addEventListener("ping", (e) => {
      const d = JSON.parse(e.data);
      syncClock(d.t);
      state.lastMsg = Date.now();
      state.sseOpen = true;
      if (state.sections && d.health) state.sections.health = d.health;
      updateBanner();
    });
    es.addEventListener("error", () => {
      if (state.sseOpen || !state.lostAt) state.lostAt = state.lostAt || Date.now();
      state.sseOpen = false;
      updateBanner();
      if (es.readyState === EventSource.CLOSED) {
        if (state.meta && !state.meta.anonymous_view && !state.session) state.needLogin = true;
        setTimeout(connect, 2000);
      }
    });
  }

  // -- banner: anything that means "what you see may not be live" --------
  function problems() {
    const out = [];
    const h = state.sections && state.sections.health;
    const at = (ms) => Render.hhmm(new Date(ms).toISOString(), tz());
    if (!state.sections) {
      out.push(["lost", state.needLogin ? "Log in to view the suite: nothing on this page is live."
        : "NOT CONNECTED to the board server yet: nothing on this page is live."]);
    } else if (!state.sseOpen || Date.now() - state.lastMsg > WATCHDOG_MS) {
      const since = state.lostAt || state.lastMsg;
      out.push(["lost", `LOST CONTACT WITH THE BOARD SERVER since ${at(since)}: nothing on this page is live; alarms may be going unseen.`]);
    } else {
      if (h.broker !== "connected") {
        out.push(["lost", `The board has LOST THE MQTT BROKER since ${Render.hhmm(h.broker_since, tz())}: alarms shown may be out of date and new alarms will NOT appear.`]);
      } else if (h.daemon === "offline") {
        out.push(["lost", `suitemon is OFFLINE${h.reason ? " (" + h.reason + ")" : ""}: alarms are NOT being monitored.`]);
      } else if (h.daemon === "stale") {
        const s = h.status_seen_at ? Math.round((now() - Date.parse(h.status_seen_at)) / 1000) : null;
        out.push(["lost", `suitemon has not reported${s !== null ? " for " + s + " s" : ""} (expected every 5 s): alarms may NOT be monitored.`]);
      } else if (h.daemon === "unknown") {
        out.push(["lost", "No status from suitemon: alarms are NOT known to be monitored."]);
      }
      if (h.journal_fault) out.push(["warn", `suitemon cannot write its journal: ${h.journal_fault}`]);
    }
    return out;
  }

  function updateBanner() {
    const list = problems();
    const banner = $("banner");
    const text = list.map((p) => p[1]).join("  ·  ");
    const lost = list.some((p) => p[0] === "lost");
    if (!list.length) {
      banner.hidden = true;
    } else {
      if ($("banner-text").textContent !== text) $("banner-text").textContent = text;
      banner.dataset.level = lost ? "lost" : "warn";
      banner.hidden = false;
    }
    const was = document.body.dataset.live;
    document.body.classList.toggle("not-live", lost);
    document.body.dataset.live = lost ? "no" : "yes";
    summary(lost);
    if (was !== document.body.dataset.live && state.sections) Render.alarms(state.sections.alarms, ctx());
  }

  function summary(lost) {
    const el = $("summary");
    const s = state.sections;
    if (!s || lost) { el.textContent = "NOT LIVE"; el.className = "summary bad"; return; }
    const n = s.alarms.length;
    const high = s.alarms.filter((a) => a.priority === "high").length;
    el.textContent = `suitemon online · ${n ? `${n} open alarm${n > 1 ? "s" : ""}${high ? `, ${high} HIGH` : ""}` : "no open alarms"}`;
    el.className = "summary " + (high ? "bad" : "ok");
  }

  // -- rendering ------------------------------------------------------------
  function ctx() {
    return { session: state.session, tz: tz(), now: now(), live: !document.body.classList.contains("not-live") };
  }

  function renderAll(names) {
    const s = state.sections;
    const c = ctx();
    const all = names.includes("alarms") || names.includes("rooms");
    if (names.includes("alarms")) { Render.alarms(s.alarms, c); announce(s.alarms); }
    if (all) Render.rooms(s.rooms, c);
    if (names.includes("devices")) Render.devices(s.devices, c);
    if (names.includes("power")) Render.power(s.power, c);
    if (names.includes("dose")) Render.dose(s.dose, c);
    if (names.includes("trends") && s.trends) Render.trends(s.trends, c);
    updateBanner();
    clock();
  }

  function clock() {
    $("clock").textContent = new Date(now()).toLocaleTimeString("en-GB", { timeZone: tz() });
    Render.tick(now());
  }

  function rerender() {
    if (state.sections) renderAll(["alarms", "rooms", "devices", "power", "dose", "trends"]);
  }

  function announce(alarms) {
    const fresh = [];
    for (const a of alarms) {
      const key = `${a.alarm_id}|${a.occurrence}`;
      if (!state.seen.has(key)) { state.seen.add(key); fresh.push(a); }
    }
    if (!state.announcedFirst) {
      state.announcedFirst = true;
      if (alarms.length) $("live-polite").textContent = `${alarms.length} open alarm${alarms.length > 1 ? "s" : ""}.`;
      return;
    }
    const high = fresh.filter((a) => a.priority === "high");
    if (high.length) {
      $("live-assertive").textContent = high.map((a) => `New HIGH priority alarm: ${a.message}, ${a.location_name || "suite"}.`).join(" ");
      if (high.some((a) => a.state === "active")) Sound.high();
    }
    const other = fresh.filter((a) => a.priority !== "high");
    if (other.length) {
      $("live-polite").textContent = other.map((a) => `New ${Render.prio(a.priority).word} priority alarm: ${a.message}.`).join(" ");
    }
  }

  function applyMeta() {
    const m = state.meta;
    $("title").textContent = m.title;
    document.title = m.title;
    $("login-btn").hidden = !m.logins || !!state.session;
  }

  // -- session and actions ----------------------------------------------------
  function setSession(s) {
    state.session = s;
    $("who").textContent = s ? `${s.name} (${s.kind})` : "";
    $("login-btn").hidden = !!s || (state.meta && !state.meta.logins);
    $("logout-btn").hidden = !s;
    rerender();
  }

  let toastTimer = null;
  function toast(text, error) {
    const el = $("toast");
    el.textContent = text;
    el.className = "toast" + (error ? " error" : "");
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, error ? 9000 : 5000);
  }

  async function post(path, body) {
    const headers = { "Content-Type": "application/json" };
    if (state.session) headers["X-CSRF-Token"] = state.session.csrf;
    const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin" });
    let data = {};
    try { data = await r.json(); } catch (_) { /* not JSON */ }
    return [r.status, data];
  }

  const DONE = { accept: "Accepted", reject: "Rejected", ack: "Acknowledged", reset: "Reset", bell_test: "Bell test started" };

  async function act(btn) {
    const verb = btn.dataset.action;
    if (verb === "bell_test" && !btn.classList.contains("confirming")) {
      // Two steps: a bell test rings in the room, and a patient may be resting there.
      btn.classList.add("confirming");
      btn.firstChild.textContent = "Confirm bell test";
      setTimeout(() => { btn.classList.remove("confirming"); btn.firstChild.textContent = "Bell test"; }, 5000);
      return;
    }
    const args = verb === "bell_test" ? { room: btn.dataset.room } : { alarm_id: btn.dataset.alarm };
    btn.disabled = true;
    try {
      const [status, data] = await post("/api/command", { verb, args });
      if (status === 401) { setSession(null); toast("Your session has ended: log in again.", true); return; }
      const what = args.alarm_id || args.room;
      if (data.ok) toast(`${DONE[verb]}: ${what} (as ${state.session ? state.session.actor : "?"})`);
      else toast(`${DONE[verb] ? verb : "Action"} refused: ${data.error || "status " + status}`, true);
      $("live-polite").textContent = data.ok ? `${DONE[verb]} ${what}.` : `Refused: ${data.error || status}.`;
    } catch (err) {
      toast(`Not sent: the board server cannot be reached (${err.message})`, true);
    } finally {
      btn.disabled = false;
      if (verb === "bell_test") { btn.classList.remove("confirming"); btn.firstChild.textContent = "Bell test"; }
    }
  }

  document.addEventListener("click", (e) => {
    const btn = e.target.closest("button[data-action]");
    if (btn && !btn.disabled) act(btn);
  });

  $("login-btn").addEventListener("click", () => {
    $("login-error").textContent = "";
    $("login-dialog").showModal();
    $("login-user").focus();
  });
  $("login-cancel").addEventListener("click", () => $("login-dialog").close());
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target;
    $("login-submit").disabled = true;
    $("login-error").textContent = "";
    try {
      const [status, data] = await post("/api/login", { username: f.username.value.trim(), password: f.password.value });
      if (status === 200 && data.ok) {
        f.password.value = "";
        $("login-dialog").close();
        setSession(data.session);
        toast(`Logged in as ${data.session.name}`);
        if (!state.sections) connect();
        $("logout-btn").focus();
      } else {
        $("login-error").textContent = data.error || `Login failed (${status})`;
      }
    } catch (err) {
      $("login-error").textContent = "The board server cannot be reached.";
    } finally {
      $("login-submit").disabled = false;
    }
  });
  $("logout-btn").addEventListener("click", async () => {
    await post("/api/logout", {}).catch(() => null);
    setSession(null);
    toast("Logged out");
    $("login-btn").focus();
  });

  $("sound-btn").addEventListener("click", async () => {
    const btn = $("sound-btn");
    if (Sound.enabled) { Sound.disable(); }
    else if (!(await Sound.enable())) { toast("This browser cannot play sound", true); }
    btn.setAttribute("aria-pressed", String(Sound.enabled));
    btn.textContent = Sound.enabled ? "Sound on" : "Sound off";
  });

  $("toast").addEventListener("click", () => { $("toast").hidden = true; });
  let ticks = 0;
  setInterval(() => {
    clock();
    // Device states that stop arriving turn "no update" even when nothing else changes.
    if (++ticks % 10 === 0 && state.sections) renderAll(["devices", "power"]);
    updateBanner();  // the watchdog: a silent stream shows within WATCHDOG_MS
  }, 500);
  setInterval(() => {
    const s = state.sections;
    if (Sound.enabled && s && !document.body.classList.contains("not-live")
        && s.alarms.some((a) => a.priority === "high" && a.state === "active")) Sound.high();
  }, SOUND_REPEAT_MS);

  fetch("/api/session", { credentials: "same-origin" }).then((r) => r.json()).then((d) => {
    state.meta = state.meta || d.meta;
    applyMeta();
    setSession(d.session);
  }).catch(() => null).finally(connect);
})();
