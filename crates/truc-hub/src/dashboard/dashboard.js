// The operator dashboard's behaviour: polls /api/overview, draws the charts in SVG by hand (no
// libraries, so the page works offline), and looks documents up through /api/document.
"use strict";

const POLL_MS = 3000;
const VIETNAMESE = {
  arrived: "đã đến", received: "đã tiếp nhận", assigned: "đã phân công",
  processing: "đang xử lý", completed: "đã hoàn thành", rejected: "từ chối",
  "recall-agreed": "đồng ý thu hồi", queued: "chưa đến",
};

// Everything shown comes from senders' headers at some point: escape it all.
function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
const $ = (id) => document.getElementById(id);
// Absolute URLs from the origin: a page opened as http://user:token@host/ has a
// base URL with credentials, from which fetch refuses to build requests; the
// browser still sends the credentials it signed in with.
const api = (path) => location.origin + path;
const number = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US"));
const rate = (n) => (n == null ? "–" : n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString("en-US"));

function vietnamTime(ms) {
  if (!ms) return "–";
  const d = new Date(ms + 7 * 3600 * 1000);
  return d.toISOString().replace("T", " ").slice(0, 19);
}
function duration(ms) {
  if (ms == null) return "–";
  const s = Math.round(ms / 1000);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  if (s < 86400) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

// A bar chart of sent and received per period, in SVG.
function barChart(container, rows, labelOf, tickEvery) {
  if (!rows.length) {
    container.innerHTML = '<div class="empty">no documents yet</div>';
    return;
  }
  // Drawn at the container's own width, so that the labels are not stretched.
  const width = Math.max(240, container.clientWidth || 800), height = 200, left = 44, bottom = 22, top = 8;
  const max = Math.max(1, ...rows.map((r) => Math.max(r.sent, r.received)));
  const slot = (width - left) / rows.length;
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  let svg = `<svg viewBox="0 0 ${width} ${height}" role="img">`;
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg += `<line class="grid-line" x1="${left}" x2="${width}" y1="${y(v)}" y2="${y(v)}"/>`;
    svg += `<text class="axis" x="${left - 4}" y="${y(v) + 3}" text-anchor="end">${esc(compact(v))}</text>`;
  }
  const bar = Math.max(1, slot * 0.42);
  rows.forEach((r, i) => {
    const x = left + i * slot;
    svg += `<rect x="${x + slot * 0.06}" y="${y(r.received)}" width="${bar}" height="${y(0) - y(r.received)}" fill="var(--received)"><title>${esc(labelOf(r))}: ${r.received} received</title></rect>`;
    svg += `<rect x="${x + slot * 0.06 + bar}" y="${y(r.sent)}" width="${bar}" height="${y(0) - y(r.sent)}" fill="var(--sent)"><title>${esc(labelOf(r))}: ${r.sent} sent</title></rect>`;
    if (i % tickEvery === 0) {
      svg += `<text class="axis" x="${x + slot / 2}" y="${height - 6}" text-anchor="middle">${esc(labelOf(r))}</text>`;
    }
  });
  container.innerHTML = svg + "</svg>";
}
function compact(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + "k";
  return Math.round(v).toString();
}

function drawCharts(data) {
  const days = data.days.rows;
  // About ten date labels whatever the span.
  barChart($("chart-days"), days, (r) => r.date.slice(5), Math.max(1, Math.ceil(days.length / 10)));
  const months = data.months.rows;
  barChart($("chart-months"), months, (r) => r.month, Math.max(1, Math.ceil(months.length / 6)));
}

function drawFunnel(funnel) {
  const total = funnel.deliveries;
  $("funnel-total").textContent = funnel.archived
    ? `${number(total)} deliveries, ${number(funnel.archived)} of them archived`
    : `${number(total)} deliveries`;
  const pct = (n) => (total ? (100 * n) / total : 0);
  const row = (name, count, kind) => `
    <div class="funnel-row">
      <span class="name">${esc(name)}<small>${esc(VIETNAMESE[name] || "")}</small></span>
      <div class="bar ${kind}"><span data-width="${pct(count).toFixed(2)}"></span></div>
      <span class="count">${number(count)}<small>${pct(count).toFixed(1)}%</small></span>
    </div>`;
  let html = funnel.stages.map((s) => row(s.name, s.count, "")).join("");
  html += row("rejected", funnel.rejected, "bad");
  if (funnel.recalled) html += row("recall-agreed", funnel.recalled, "recall");
  html += row("queued", funnel.queued, "queued");
  // The markup is replaced only when it changes; widths are set through the
  // DOM, as the page's content security policy refuses inline styles.
  const funnelBox = $("funnel");
  if (funnelBox.dataset.html !== html) {
    funnelBox.innerHTML = html;
    funnelBox.dataset.html = html;
    funnelBox.querySelectorAll("[data-width]").forEach((bar) => {
      bar.style.width = bar.dataset.width + "%";
    });
  }
}

function bytes(n) {
  if (n >= 2 ** 30) return (n / 2 ** 30).toFixed(2) + " GiB";
  if (n >= 2 ** 20) return (n / 2 ** 20).toFixed(1) + " MiB";
  return Math.round(n / 1024) + " KiB";
}

// The live store's size, what the archives hold, and retention's last run.
function drawRetention(store, retention) {
  $("kpi-store").textContent = bytes(store.size_bytes);
  const backlog = retention.enabled
    ? ` · backlog ${number(retention.backlog)} (${number(retention.held)} held)`
    : "";
  const index = store.id_index_bytes == null ? "" : ` · id index ${bytes(store.id_index_bytes)}`;
  $("kpi-store-note").textContent =
    `${number(store.archived_documents)} documents in ${number(store.archive_files)} archives${index}${backlog}`;
  if (!retention.enabled) {
    $("kpi-archive").textContent = "off";
    $("kpi-archive-note").textContent = "retention is not enabled";
  } else if (retention.last_run_at_unix_ms == null) {
    $("kpi-archive").textContent = "–";
    $("kpi-archive-note").textContent = `none yet; documents leave ${retention.period_days} days after acceptance`;
  } else {
    $("kpi-archive").textContent = vietnamTime(retention.last_run_at_unix_ms).slice(-8);
    $("kpi-archive-note").textContent = retention.last_error
      ? `failed: ${retention.last_error}`
      : `${number(retention.last_run_archived)} archived into ${retention.last_file || "–"} in ${duration(retention.last_run_took_ms)}`;
  }
}

function fillTable(id, rows, render, emptyText) {
  const body = document.querySelector(`#${id} tbody`);
  const columns = document.querySelectorAll(`#${id} thead th`).length;
  body.innerHTML = rows.length
    ? rows.map(render).join("")
    : `<tr><td colspan="${columns}" class="empty">${esc(emptyText)}</td></tr>`;
}

// Which hub answered, the store it runs on and, on PostgreSQL, the database's
// primary, its standbys and each hub's share of the nodes.
function drawStorage(s) {
  if (!s) return;
  let text = `hub ${s.hub} · ${s.engine} store`;
  if (s.engine !== "embedded") {
    text += s.writable ? " · writable" : " · NOT WRITABLE";
    if (s.database) {
      text += ` · primary ${s.database.primary}`;
      for (const standby of s.database.standbys) {
        text += ` · standby ${standby.name} ${standby.sync_state} (${number(standby.replay_lag_bytes)} B behind)`;
      }
    }
    if (s.hubs.length) text += " · nodes per hub: " + s.hubs.map((h) => `${h.hub} ${number(h.nodes)}`).join(", ");
  }
  $("storage").textContent = text;
}

function draw(data) {
  const t = data.totals, r = data.rates, n = data.nodes;
  $("kpi-sent").textContent = number(t.documents_sent);
  $("kpi-received").textContent = number(t.deliveries_received);
  $("kpi-sent-rate").textContent = r.sent_per_minute == null ? "rate: measuring…" : `${rate(r.sent_per_minute)} / min`;
  $("kpi-received-rate").textContent = r.received_per_minute == null ? "rate: measuring…" : `${rate(r.received_per_minute)} / min`;
  $("kpi-online").textContent = `${number(n.online)} / ${number(n.with_node)}`;
  $("kpi-agencies").textContent = `${number(t.agencies_with_traffic)} of ${number(t.agencies_registered)} agencies with traffic`;
  $("kpi-queue").textContent = number(n.documents_queued);
  $("kpi-queue-note").textContent = `and ${number(n.notices_queued)} status notices for senders`;
  $("kpi-overdue").textContent = number(data.overdue.rows.length) + (data.overdue.truncated ? "+" : "");
  drawRetention(data.store, data.retention);

  drawStorage(data.storage);
  drawCharts(data);
  drawFunnel(data.funnel);
  fillTable("nodes", n.rows, (row) => `<tr>
      <td class="code">${esc(row.code)}</td><td title="${esc(row.name)}">${esc(row.name)}</td>
      <td class="${row.online ? "online" : "offline"}">${row.online ? "● online" : "○ offline"}${row.hub ? ` <small>on ${esc(row.hub)}</small>` : ""}</td>
      <td class="num">${number(row.queued_documents)}</td>
      <td class="num">${number(row.queued_notices)}</td>
      <td class="num">${row.oldest_unacked_age_ms == null ? "" : duration(row.oldest_unacked_age_ms)}</td></tr>`,
    "no node has a queue");
  fillTable("agencies", data.agencies.rows, (row) => `<tr>
      <td class="code">${esc(row.code)}</td><td title="${esc(row.name)}">${esc(row.name)}</td>
      <td class="num">${number(row.sent)}</td><td class="num">${number(row.received)}</td>
      <td class="num">${rate(row.sent_per_minute)}</td><td class="num">${rate(row.received_per_minute)}</td></tr>`,
    "no traffic yet");
  fillTable("overdue", data.overdue.rows, (row) => `<tr>
      <td class="code" title="${esc(row.recipient_name)}">${esc(row.recipient)}</td>
      <td>${esc(row.deadline)}</td><td class="num late">${duration(row.late_ms)}</td>
      <td class="code"><a href="#" data-document="${esc(row.document_id)}">${esc(row.document_id)}</a></td></tr>`,
    "nothing overdue");
  $("recent").innerHTML = data.recent.length
    ? "<span class=\"subtitle\">latest:</span> " + data.recent.map((d) =>
      `<a href="#" data-document="${esc(d.document_id)}" title="${esc(d.subject)}">${esc(d.document_id)}</a>`).join("")
    : "";
  $("footer").textContent = `snapshot computed in ${data.compute_ms} ms · ` +
    `${data.days.rows.length} days, ${data.months.rows.length} months of traffic · refreshes every ${POLL_MS / 1000} s`;
}

function setLive(state, text) {
  $("live").className = "live " + state;
  $("live-text").textContent = text;
}

async function poll() {
  try {
    const response = await fetch(api("/api/overview"), { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const data = await response.json();
    draw(data);
    setLive("", "live · updated " + vietnamTime(data.generated_at_unix_ms).slice(11) + " (UTC+7)");
  } catch (error) {
    setLive("down", "hub unreachable: " + error.message);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

async function lookUp(id) {
  const box = $("document");
  $("lookup-id").value = id;
  box.innerHTML = '<div class="empty">looking up…</div>';
  try {
    const response = await fetch(api("/api/document?id=" + encodeURIComponent(id)), { cache: "no-store" });
    const data = await response.json();
    if (!response.ok) {
      box.innerHTML = `<div class="error">${esc(data.error || "HTTP " + response.status)}</div>`;
      return;
    }
    box.innerHTML = renderDocument(data);
  } catch (error) {
    box.innerHTML = `<div class="error">${esc(error.message)}</div>`;
  }
}

function renderDocument(d) {
  const routes = d.recipients.map((r) => `
    <div class="route"><span class="code">${esc(r.recipient)}</span> ${esc(r.name)}
      · now <b>${esc(r.current)}</b> <small>${esc(VIETNAMESE[r.current] || "")}</small>
      <div class="path">${esc(d.sender)} → hub → ${esc(r.route)}</div></div>`).join("");
  const refused = d.refused.map((r) => `
    <div class="route error"><span class="code">${esc(r.organ_id)}</span> refused: ${esc(r.reason)}</div>`).join("");
  const events = d.timeline.map((e) => `
    <li class="${esc(e.event)}"><time>${esc(vietnamTime(e.at_unix_ms))}</time>
      <b>${esc(e.event)}</b>${e.recipient ? ` at <span class="code">${esc(e.recipient)}</span>` : ""}
      <small class="subtitle">by ${esc(e.actor)}</small>${e.reason ? ` «${esc(e.reason)}»` : ""}</li>`).join("");
  return `
    <dl class="doc-head">
      <dt>document</dt><dd class="code">${esc(d.document_id)}</dd>
      <dt>from</dt><dd><span class="code">${esc(d.sender)}</span> ${esc(d.sender_name)}</dd>
      <dt>subject</dt><dd>${esc(d.subject)}</dd>
      <dt>accepted</dt><dd>${esc(vietnamTime(d.accepted_at_unix_ms))} (UTC+7) · ${esc(d.business_type)} · document signature ${esc(d.document_signature)}</dd>
    </dl>
    <div class="doc-body">
      <div><h2>Route</h2>${routes}${refused}</div>
      <div><h2>Status timeline</h2><ul class="timeline">${events}</ul></div>
    </div>`;
}

document.addEventListener("DOMContentLoaded", () => {
  $("lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("lookup-id").value.trim();
    if (id) lookUp(id);
  });
  document.body.addEventListener("click", (event) => {
    const link = event.target.closest("[data-document]");
    if (link) {
      event.preventDefault();
      lookUp(link.dataset.document);
    }
  });
  // `/?document=<id>` opens with that document looked up.
  const asked = new URLSearchParams(location.search).get("document");
  if (asked) lookUp(asked);
  poll();
});
