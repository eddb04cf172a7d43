/* Rendering: view sections -> DOM. Every string from MQTT is escaped. Items are keyed and
   only replaced when their HTML changes, so a keyboard user's focus survives live updates.
   Times (ages, countdowns) live in <span data-age|data-due> filled by Render.tick(). */
"use strict";
const Render = (() => {
  const PRIO = {
    high: { sym: "!!!", word: "HIGH" }, medium: { sym: "!!", word: "MEDIUM" }, low: { sym: "!", word: "LOW" },
  };
  const ACTION_LABEL = { accept: "Accept", reject: "Reject", ack: "Acknowledge", reset: "Reset" };

  function h(s) {
    return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function prio(p) { return PRIO[p] || PRIO.high; }
  function badge(p) {
    const x = prio(p);
    return `<span class="sym" aria-hidden="true">${x.sym}</span> ${x.word}<span class="sr-only"> priority</span>`;
  }
  function hhmm(iso, tz) {
    if (!iso) return "";
    const d = new Date(iso);
    if (isNaN(d)) return "";
    return d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", timeZone: tz || undefined });
  }
  function duration(s) {
    s = Math.max(0, Math.round(s));
    const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
    const two = (n) => String(n).padStart(2, "0");
    return hh ? `${hh}:${two(mm)}:${two(ss)}` : `${mm}:${two(ss)}`;
  }
  function age(s) {
    if (s < 60) return `${Math.max(0, Math.round(s))} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  function num(v, digits) {
    if (typeof v !== "number") return h(v);
    return v.toLocaleString("en-GB", { maximumFractionDigits: digits ?? 1 });
  }

  /* Replace children of `list` so they match `items` ([key, html]); untouched items keep focus. */
  function keyed(list, items, tag) {
    const existing = new Map();
    for (const el of Array.from(list.children)) existing.set(el.dataset.key, el);
    let prev = null;
    for (const [key, html] of items) {
      let el = existing.get(key);
      existing.delete(key);
      if (!el || el.dataset.html !== html) {
        const fresh = document.createElement(tag);
        fresh.dataset.key = key;
        fresh.dataset.html = html;
        const tmp = document.createElement("template");
        tmp.innerHTML = html;
        const root = tmp.content.firstElementChild;
        fresh.className = root.className;
        for (const a of Array.from(root.attributes)) if (a.name !== "class") fresh.setAttribute(a.name, a.value);
        fresh.append(...root.childNodes);
        const focused = el && el.contains(document.activeElement) ? document.activeElement : null;
        if (el) el.replaceWith(fresh); else list.append(fresh);
        if (focused && focused.dataset.action) {
          const again = fresh.querySelector(`[data-action="${focused.dataset.action}"]`);
          if (again) again.focus();
        }
        el = fresh;
      }
      if (prev ? prev.nextElementSibling !== el : list.firstElementChild !== el) {
        if (prev) prev.after(el); else list.prepend(el);
      }
      prev = el;
    }
    for (const el of existing.values()) el.remove();
  }

  function alarmItem(a, ctx) {
    const esc = a.escalation;
    let escLine = "";
    if (esc) {
      if (esc.accepted_by) escLine = `Accepted by <strong>${h(esc.accepted_by)}</strong>`;
      else {
        const of = esc.steps ? ` of ${esc.steps}` : "";
        const rej = (esc.rejected_by || []).length ? ` · rejected by ${h(esc.rejected_by.join(", "))}` : "";
        const next = a.state === "active" ? ` · ${esc.failsafe ? "repeats" : "next step"} in <span data-due="${h(esc.deadline)}"></span>` : "";
        escLine = `Escalation step ${Number(esc.step) + 1}${of}: <strong>${h(esc.role_name || esc.role)}</strong> (${h((esc.recipients || []).join(", "))})${rej}${next}`;
      }
    }
    const state = a.state === "acknowledged"
      ? `ACKNOWLEDGED${a.acknowledged_by ? " by " + h(a.acknowledged_by) : ""}` : "ACTIVE";
    const cond = a.latching && a.condition === "absent" ? " · condition ended, reset needed" : "";
    const proto = a.protocol && a.protocol.number
      ? `<div class="proto">Call <strong>${h(a.protocol.number)}</strong> (${h(a.protocol.who)}) · ${h(a.protocol.location)}</div>` : "";
    const DELIVERY = {queued: "queued", sent: "sent", accepted: "\u2713 reached", failed: "\u2717 FAILED",
      cancelled: "cancelled", suppressed: "not paged (night)", none: "board only"};
    const CHANNEL = {espa444: "pager", apprise: "message"};
    const pages = (a.deliveries || []).map((d) =>
      `<span class="dl d-${h(d.state)}" title="${h(d.reason || "")}">${h(d.recipient)} (${h(CHANNEL[d.channel] || "no pager")}): ${h(DELIVERY[d.state] || d.state)}</span>`);
    const pageLine = pages.length ? `<div class="esc deliveries">Pages: ${pages.join(" · ")}</div>` : "";
    let btns = "";
    if (ctx.session && a.actions.length) {
      btns = `<div class="btns">${a.actions.map((v) =>
        `<button type="button" class="${v === "accept" ? "primary" : v === "reject" ? "danger" : ""}" data-action="${v}" data-alarm="${h(a.alarm_id)}">${ACTION_LABEL[v]}<span class="sr-only"> ${h(a.message)}</span></button>`).join("")}</div>`;
    }
    return `<li class="alarm p-${h(a.priority)} s-${h(a.state)}" data-alarm-id="${h(a.alarm_id)}">
      <div class="badge">${badge(a.priority)}</div>
      <div class="body">
        <div class="msg">${h(a.message)}</div>
        <div class="meta">${h(a.location_name || "suite")} · ${h(a.kind)} · <span class="state">${state}</span>${cond} · raised ${hhmm(a.raised_at, ctx.tz)} (<span data-age="${h(a.raised_at)}"></span> ago)</div>
        ${escLine ? `<div class="esc">${escLine}</div>` : ""}${pageLine}${proto}${btns}
      </div></li>`;
  }

  function alarms(list, ctx) {
    const el = document.getElementById("alarm-list");
    document.getElementById("alarm-count").textContent = list.length ? `(${list.length} open)` : "";
    if (!list.length) {
      el.innerHTML = `<li class="empty" data-key="none">No open alarms${ctx.live ? "" : " known (the board is NOT live)"}</li>`;
      return;
    }
    if (el.querySelector("[data-key=none]")) el.innerHTML = "";
    keyed(el, list.map((a) => [`${a.alarm_id}|${a.occurrence}`, alarmItem(a, ctx)]), "li");
  }

  function roomTile(r, ctx) {
    const c = r.call;
    const call = c
      ? `<div class="call p-${h(c.priority)}"><span aria-hidden="true">${prio(c.priority).sym}</span> ${h(c.label)}${c.state === "acknowledged" ? " (ack)" : ""}<span class="sr-only"> ${prio(c.priority).word} priority</span></div>`
      : `<div class="call none">No call</div>`;
    const occ = r.occupied === true ? `Occupied${r.occupied_since ? " since " + hhmm(r.occupied_since, ctx.tz) : ""}`
      : r.occupied === false ? "Free" : "Unknown";
    let uptake = "—";
    const ust = r.uptake && r.uptake.state ? String(r.uptake.state) : "";
    if (/^(ready|overdue)$/i.test(ust)) uptake = `<b>${h(ust.toUpperCase())}</b>`;
    else if (r.uptake && r.uptake.due_at) uptake = `<span data-due="${h(r.uptake.due_at)}" data-due-zero="Due now" data-suffix=" left"></span>`;
    else if (ust && !/^idle$/i.test(ust)) uptake = h(ust);
    let rate = "";  // no row at all for a room without a monitor: never a blank that reads as zero
    if (r.dose_rate) {
      rate = r.dose_rate.stale ? `<span class="stale-val">NOT CURRENT (${h(r.dose_rate.comm === "lost" ? "comm lost" : "stale")})</span>`
        : r.dose_rate.value === null ? `<span class="stale-val">NO VALID READING (detector fault)</span>`
        : `${num(r.dose_rate.value, 2)} ${h(r.dose_rate.unit)}`;
    }
    const tech = r.technical ? `<div class="tech">${prio(r.technical_priority).sym} ${r.technical} technical alarm${r.technical > 1 ? "s" : ""}</div>` : "";
    const bell = ctx.session && r.kind === "uptake_room"
      ? `<button type="button" data-action="bell_test" data-room="${h(r.id)}">Bell test<span class="sr-only"> ${h(r.name)}</span></button>` : "";
    return `<article class="room${c ? " call-" + h(c.priority) : ""}" data-room="${h(r.id)}" aria-label="${h(r.name)}">
      <h3>${h(r.name)}</h3>${call}
      <dl><dt>Patient</dt><dd>${occ}</dd><dt>Uptake</dt><dd>${uptake}</dd>${rate ? `<dt>Dose rate</dt><dd>${rate}</dd>` : ""}</dl>
      ${tech}${bell}</article>`;
  }

  function rooms(list, ctx) {
    const el = document.getElementById("room-grid");
    if (!list.length) { el.innerHTML = `<p class="empty">No rooms configured</p>`; return; }
    keyed(el, list.map((r) => [r.id, roomTile(r, ctx)]), "article");
  }

  function values(v) {
    return Object.entries(v || {}).map(([k, x]) => `${h(k.replace(/_/g, " "))} <b>${typeof x === "number" ? num(x, 2) : h(x)}</b>`).join(" · ");
  }

  const SILENT_S = 15;  // the daemon republishes every device state at least every 5 s

  function devState(d, nowMs) {
    if (d.comm === "lost") return ["dev-lost", "✕ COMM LOST"];
    if (d.comm === "connecting") return ["dev-stale", "… CONNECTING"];
    if (d.stale) return ["dev-stale", "⏸ STALE"];
    const pub = Date.parse(d.published_at);
    if (nowMs && !isNaN(pub) && nowMs - pub > SILENT_S * 1000) return ["dev-stale", "⏸ NO UPDATE"];
    return ["dev-ok", "✓ OK"];
  }

  const UPS_FMT = {
    runtime_s: (v) => `runtime <b>${duration(v)}</b>`, runtime_remaining_s: (v) => `runtime <b>${duration(v)}</b>`,
    charge_pct: (v) => `charge <b>${num(v)} %</b>`, state_of_charge_pct: (v) => `charge <b>${num(v)} %</b>`,
    load_pct: (v) => `load <b>${num(v)} %</b>`, input_voltage: (v) => `input <b>${num(v)} V</b>`,
    input_v: (v) => `input <b>${num(v)} V</b>`, output_voltage: (v) => `output <b>${num(v)} V</b>`,
    output_v: (v) => `output <b>${num(v)} V</b>`, battery_temperature: (v) => `battery <b>${num(v)} °C</b>`,
    shutdown_imminent: (v) => (v ? `<b>SHUTDOWN IMMINENT</b>` : ""),
  };
  function upsValues(v) {
    const known = Object.entries(v || {}).filter(([k, x]) => UPS_FMT[k] && typeof x !== "object");
    const parts = known.length ? known.map(([k, x]) => UPS_FMT[k](x)).filter(Boolean)
      : Object.entries(v || {}).map(([k, x]) => `${h(k.replace(/_/g, " "))} <b>${h(x)}</b>`);
    return parts.map((p) => `<span>${p}</span>`).join("");
  }

  function devices(list, ctx) {
    const el = document.getElementById("device-list");
    const bad = list.filter((d) => devState(d, ctx.now)[0] !== "dev-ok").length;
    document.getElementById("device-count").textContent = list.length ? `(${list.length}${bad ? `, ${bad} not current` : ""})` : "";
    if (!list.length) { el.innerHTML = `<li class="empty" data-key="none">No device has reported</li>`; return; }
    if (el.querySelector("[data-key=none]")) el.innerHTML = "";
    keyed(el, list.map((d) => {
      const [cls, word] = devState(d, ctx.now);
      const err = d.last_error && d.stale ? `<div class="dev-vals">${h(d.last_error)}</div>` : "";
      return [d.device_id, `<li class="${cls}" data-device="${h(d.device_id)}"><span class="dev-badge">${word}</span>
        <div><strong>${h(d.name)}</strong> <span class="note">${h(d.location_name || "")}${d.ts ? ` · read <span data-age="${h(d.ts)}"></span> ago` : ""}</span>
        <div class="dev-vals">${d.stale ? "last known: " : ""}${values(d.values)}</div>${err}</div></li>`];
    }), "li");
  }

  function power(p, ctx) {
    const el = document.getElementById("power");
    const mains = { mains: ["mains-ok", "ON MAINS"], battery: ["mains-battery", "⚡ ON BATTERY: MAINS FAILED"],
      unknown: ["mains-unknown", "Mains state unknown"] }[p.mains] || ["mains-unknown", "Mains state unknown"];
    let html = `<div class="mains ${mains[0]}">${mains[1]}</div>`;
    if (!p.ups.length) html += `<p class="empty">No UPS is reporting</p>`;
    for (const u of p.ups) {
      const [cls, word] = devState(u, ctx.now);
      html += `<div class="ups ${cls}"><strong>${h(u.name)}</strong> <span class="dev-badge">${word}</span><div class="kv">${upsValues(u.values)}</div></div>`;
    }
    const sd = p.shutdown;
    if (sd) {
      const pct = sd.total ? Math.round((100 * sd.done) / sd.total) : null;
      html += `<div class="shutdown${sd.active ? " active" : ""}"><div>Shutdown sequence: <strong class="sd-state">${h(sd.state.toUpperCase())}</strong>
        ${sd.total ? ` · ${sd.done} of ${sd.total} steps done` : ""}${sd.deadline ? ` · power off in <span data-due="${h(sd.deadline)}"></span>` : ""}</div>
        ${pct !== null ? `<progress max="${sd.total}" value="${sd.done}" aria-label="Shutdown progress">${pct}%</progress>` : ""}
        ${sd.message ? `<div class="note">${h(sd.message)}</div>` : ""}
        ${sd.steps.length ? `<ol class="steps">${sd.steps.map((s) => `<li class="${/^(done|complete|completed|ok|ready|off|shutdown|skipped)$/i.test(s.state) ? "done" : ""}">${h(s.name)}: <b>${h(s.state)}</b></li>`).join("")}</ol>` : ""}</div>`;
    } else {
      html += `<p class="note">Shutdown sequencer: no state published</p>`;
    }
    el.innerHTML = html;
  }

  function dose(d, ctx) {
    const el = document.getElementById("dose");
    const day = new Date(d.date + "T12:00:00").toLocaleDateString("en-GB", { weekday: "short", day: "numeric", month: "short" });
    let html = `<div class="dose-total">${day}: ${d.count} administration${d.count === 1 ? "" : "s"}${d.count ? `, ${num(d.total_mbq)} MBq` : ""}</div>`;
    const rps = Object.entries(d.by_radiopharmaceutical || {});
    if (rps.length) html += `<div class="note">${rps.map(([k, v]) => `${h(k)}: ${v.count} (${num(v.total_mbq)} MBq)`).join(" · ")}</div>`;
    if (d.outside_tolerance) html += `<div><span class="badge p-medium"><span aria-hidden="true">!!</span> ${d.outside_tolerance} outside ±10 % of prescription</span></div>`;
    html += `<div class="note">${d.studies} scanner stud${d.studies === 1 ? "y" : "ies"} received${d.ct_dlp_total != null ? ` · CT DLP total ${num(d.ct_dlp_total)} mGy·cm` : ""}</div>`;
    if (d.recent.length) {
      html += `<table><thead><tr><th>Time</th><th>Room</th><th>Radiopharmaceutical</th><th>MBq</th></tr></thead><tbody>${d.recent.map((r) =>
        `<tr><td>${hhmm(r.at, ctx.tz)}</td><td>${h(r.room_name || "")}</td><td>${h(r.radiopharmaceutical || "")}</td><td>${num(r.measured_mbq)}</td></tr>`).join("")}</tbody></table>`;
    }
    if (d.summary) {
      const sm = d.summary;
      html += `<div class="note">Dispenser's summary at ${hhmm(sm.ts, ctx.tz)}: ${h(sm.administrations)} administrations, ${num(sm.total_mbq)} MBq${sm.with_failed_checks ? ` · <b>${h(sm.with_failed_checks)} with failed checks</b>` : ""}${sm.records_lost ? ` · <b>${h(sm.records_lost)} records lost</b>` : ""}</div>`;
    }
    if (!d.complete) html += `<p class="note">Counted since ${hhmm(d.since, ctx.tz)} (the board was not listening before): earlier administrations today are not included.</p>`;
    el.innerHTML = html;
  }

  /* Trends: small inline SVG charts drawn by hand (no library, nothing fetched). A null value is a
     gap and a "broken" bucket (fresh and lost samples together) is drawn alone: a line never
     bridges a time the value was not known. */
  const CW = 320, CH = 118, PL = 40, PR = 54, PT = 8, PB = 20;

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v * 0.999) return m * p;
    return 10 * p;
  }
  function fmtTick(v) { return num(v, v < 10 ? 2 : v < 100 ? 1 : 0); }

  function segments(values, broken, x, y) {
    const alone = new Set(broken || []);
    let out = "";
    let run = [];
    const flush = () => {
      if (run.length === 1) out += `<circle class="tl-dot" cx="${run[0][0]}" cy="${run[0][1]}" r="2.4"/>`;
      else if (run.length > 1) out += `<polyline class="tl" points="${run.map((p) => p.join(",")).join(" ")}"/>`;
      run = [];
    };
    values.forEach((v, i) => {
      if (v === null || v === undefined) { flush(); return; }
      const p = [x(i).toFixed(1), y(v).toFixed(1)];
      if (alone.has(i)) { flush(); run.push(p); flush(); return; }
      run.push(p);
    });
    flush();
    return out;
  }

  function hasGaps(values) {
    const drawn = values.map((v, i) => (v === null ? -1 : i)).filter((i) => i >= 0);
    return drawn.length > 0 && drawn[drawn.length - 1] - drawn[0] + 1 > drawn.length;
  }

  /* One chart: o = {label, values, broken, ymax, unit, levels: [{v, name, cls}], xLabels, points?} */
  function svgChart(o) {
    const n = o.values ? o.values.length : 1;
    const w = CW - PL - PR, hh = CH - PT - PB;
    const x = (i) => PL + ((i + 0.5) * w) / n;
    const y = (v) => PT + hh - (Math.min(v, o.ymax) / o.ymax) * hh;
    let g = `<line class="axis" x1="${PL}" y1="${PT}" x2="${PL}" y2="${PT + hh}"/><line class="axis" x1="${PL}" y1="${PT + hh}" x2="${PL + w}" y2="${PT + hh}"/>`;
    for (const t of [0, o.ymax / 2, o.ymax]) {
      g += `<text class="tick" x="${PL - 4}" y="${(y(t) + 3.5).toFixed(1)}" text-anchor="end">${fmtTick(t)}</text>`;
    }
    g += `<text class="tick unit" x="${PL - 4}" y="${CH - 4}" text-anchor="end">${h(o.unit)}</text>`;
    const xl = o.xLabels;
    g += `<text class="tick" x="${PL}" y="${CH - 4}">${h(xl[0])}</text><text class="tick" x="${PL + w / 2}" y="${CH - 4}" text-anchor="middle">${h(xl[1])}</text><text class="tick" x="${PL + w}" y="${CH - 4}" text-anchor="end">${h(xl[2])}</text>`;
    for (const l of o.levels || []) {
      const ly = y(l.v).toFixed(1);
      g += `<line class="lvl ${l.cls}" x1="${PL}" y1="${ly}" x2="${PL + w}" y2="${ly}"/><text class="lvl-t ${l.cls}" x="${PL + w + 3}" y="${(Number(ly) + 3.5).toFixed(1)}">${h(l.name)} ${fmtTick(l.v)}</text>`;
    }
    g += o.points || segments(o.values, o.broken, x, y);
    return `<svg class="chart" viewBox="0 0 ${CW} ${CH}" role="img" aria-label="${h(o.label)}">${g}</svg>`;
  }

  const WINDOW_X = ["−30 min", "−15 min", "now"];

  function latestText(l, unit, ctx, digits) {
    if (l.current) return `${num(l.value, digits)} ${unit}`;
    if (l.value !== null && l.value !== undefined) return `NOT CURRENT (last ${num(l.value, digits)} ${unit} at ${hhmm(l.at, ctx.tz)})`;
    return "NOT CURRENT (no reading)";
  }

  function doseChart(d, ctx) {
    const data = d.values.filter((v) => v !== null);
    const lv = d.levels;
    const top = Math.max(0, ...data, lv ? lv.alarm * 1.1 : 0);
    const levels = lv ? [{ v: lv.warning, name: "warn", cls: "lvl-warn" }, { v: lv.alarm, name: "alarm", cls: "lvl-alarm" }] : [];
    const now = latestText(d.latest, d.unit, ctx, 2);
    const lvText = lv ? ` Warning level ${num(lv.warning, 2)}, alarm level ${num(lv.alarm, 2)} ${d.unit}${lv.set === "occupied" ? " (room occupied)" : ""}.` : " No levels configured.";
    const label = `Dose rate, ${d.name}${d.area_name ? ", " + d.area_name : ""}, last 30 minutes: now ${now}.${lvText}${hasGaps(d.values) ? " Gaps where the monitor was not reporting." : ""}`;
    const cls = d.latest.current ? "" : " not-current";
    return `<figure class="trend${cls}" data-trend="${h(d.device)}">
      <figcaption><strong>${h(d.area_name || d.name)}</strong> <span class="note">${h(d.name)}</span> · <span class="latest">${h(now)}</span></figcaption>
      ${svgChart({ label, values: d.values, broken: d.broken, ymax: niceMax(top), unit: d.unit, levels, xLabels: WINDOW_X })}</figure>`;
  }

  function upsCharts(u, ctx) {
    const mins = { ...u.runtime_s, values: u.runtime_s.values.map((v) => (v === null ? null : v / 60)) };
    const rt = mins.values.filter((v) => v !== null);
    const lc = u.charge_pct.latest, lr = u.runtime_s.latest;
    const state = u.on_battery ? `ON BATTERY since ${hhmm(u.battery_since, ctx.tz)}` : `mains back at ${hhmm(u.mains_back_at, ctx.tz)}`;
    const chargeNow = latestText(lc, "%", ctx, 1);
    const runNow = lr.current ? duration(lr.value) : latestText(lr, "s", ctx, 0);
    const gaps = hasGaps(u.charge_pct.values) ? " Gaps where the UPS was not reporting." : "";
    return `<figure class="trend ups-trend${u.on_battery ? " on-battery" : ""}" data-trend="${h(u.device)}">
      <figcaption><strong>${h(u.name)}</strong> · <span class="latest">${h(state)}: charge ${h(chargeNow)}, runtime ${h(runNow)}</span></figcaption>
      <div class="pair">${svgChart({ label: `UPS ${u.name} charge, last 30 minutes: now ${chargeNow}; ${state}.${gaps}`, values: u.charge_pct.values, broken: u.charge_pct.broken, ymax: 100, unit: "%", xLabels: WINDOW_X })}
      ${svgChart({ label: `UPS ${u.name} runtime, last 30 minutes: now ${runNow}; ${state}.${gaps}`, values: mins.values, broken: mins.broken, ymax: niceMax(Math.max(1, ...rt)), unit: "min", xLabels: WINDOW_X })}</div></figure>`;
  }

  function callsChart(r, ctx) {
    const start = Date.parse(r.day_start);
    const day = 24 * 3600 * 1000;
    const w = CW - PL - PR, hh = CH - PT - PB;
    const ymax = niceMax(Math.max(60, r.max_s || 0));
    const pts = r.calls.map((c) => {
      const cx = PL + (Math.min(day, Math.max(0, Date.parse(c.pressed_at) - start)) / day) * w;
      const cy = PT + hh - (Math.min(c.seconds, ymax) / ymax) * hh;
      return `<circle class="call-dot${c.emergency ? " emergency" : ""}" cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="3"><title>${h(c.room_name || c.room || "")} ${hhmm(c.pressed_at, ctx.tz)}: ${duration(c.seconds)} (${h(c.accepted_by || "")})</title></circle>`;
    }).join("");
    const summary = r.count
      ? `${r.count} call${r.count === 1 ? "" : "s"} answered today · median ${duration(r.median_s)} · longest ${duration(r.max_s)}`
      : "No calls answered today";
    const partial = r.complete ? "" : ` (counted since ${hhmm(r.since, ctx.tz)})`;
    const label = `Call response times today, press to accept: ${summary}${partial}.`;
    return `<figure class="trend calls-trend" data-trend="calls">
      <figcaption><strong>Call response times</strong> · <span class="latest">${h(summary)}${h(partial)}</span></figcaption>
      ${svgChart({ label, values: [], ymax, unit: "s", xLabels: ["00:00", "12:00", "24:00"], points: pts })}</figure>`;
  }

  function trends(t, ctx) {
    const el = document.getElementById("trend-list");
    const items = t.dose_rate.map((d) => [`dose|${d.device}`, doseChart(d, ctx)]);
    for (const u of t.ups) items.push([`ups|${u.device}`, upsCharts(u, ctx)]);
    items.push(["calls", callsChart(t.responses, ctx)]);
    keyed(el, items, "figure");
  }

  /* Fill every age and countdown from the server-corrected clock. */
  function tick(nowMs) {
    for (const el of document.querySelectorAll("[data-age]")) {
      const t = Date.parse(el.dataset.age);
      el.textContent = isNaN(t) ? "?" : age((nowMs - t) / 1000);
    }
    for (const el of document.querySelectorAll("[data-due]")) {
      const t = Date.parse(el.dataset.due);
      const left = (t - nowMs) / 1000;
      el.textContent = isNaN(t) ? "?" : left <= 0 ? (el.dataset.dueZero || "0:00") : duration(left) + (el.dataset.suffix || "");
    }
  }

  return { alarms, rooms, devices, power, dose, trends, tick, h, prio, hhmm };
})();
