"use strict";
// The human console: sign in with an agent key, watch the queue, open a case, claim it, reply,
// approve or reject the pending action, and hand the conversation back to the bot.
(() => {
  const { call, follow, el } = window.deskline;
  const KEY = "deskline.agentKey";
  const $ = (id) => document.getElementById(id);
  let key = sessionStorage.getItem(KEY);
  let me = null;
  let entries = [];
  let selected = null;
  let stream = null;
  let shown = new Set();
  let timer = null;

  function showError(text) {
    $("error").textContent = text || "";
    $("error").hidden = !text;
  }

  function waited(seconds) {
    const s = Math.floor(seconds);
    return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h ${Math.floor(s % 3600 / 60)}m`;
  }

  function pendingText(p) {
    const what = [p.action, p.amount].filter(Boolean).join(" ");
    return `${what || p.skill}${p.reason ? ` — ${p.reason}` : ""}`;
  }

  async function signIn(candidate) {
    const who = await call("GET", "/v1/agents/me", candidate);
    key = candidate;
    me = who.name;
    sessionStorage.setItem(KEY, key);
    $("me").textContent = `Signed in as ${me}`;
    $("signin").hidden = true;
    $("signout").hidden = false;
    document.body.dataset.agent = me;
    await refresh();
    timer = setInterval(() => refresh().catch((err) => showError(err.message)), 2000);
  }

  function languageName(code) {
    if (!code) return "—";
    try {
      return `${new Intl.DisplayNames(["en"], { type: "language" }).of(code)} (${code})`;
    } catch (err) {
      return code;
    }
  }

  async function refresh() {
    const q = await call("GET", "/v1/queue", key);
    entries = q.entries;
    $("sla").textContent = `SLA ${waited(q.sla_seconds)} to claim`;
    const rows = entries.map((e) => {
      const tr = el("tr", [e.sla_breached ? "breach" : "", e.conversation_id === selected ? "selected" : ""].join(" ").trim());
      tr.dataset.conversation = e.conversation_id;
      const prio = el("td");
      prio.append(el("span", `badge p${e.priority}`, e.priority === 1 ? "urgent" : `P${e.priority}`));
      const wait = el("td", "", waited(e.waiting_s));
      if (e.sla_breached) wait.append(" ", el("span", "badge sla", "SLA breached"));
      tr.append(prio, wait, el("td", "language", languageName(e.language)), el("td", "reason", e.reason),
        el("td", "", e.claimed_by || "unclaimed"));
      tr.addEventListener("click", () => select(e.conversation_id));
      return tr;
    });
    $("queue").replaceChildren(...rows);
    $("empty").hidden = entries.length > 0;
    showCase();
  }

  function showCase() {
    if (!selected) return;
    const e = entries.find((x) => x.conversation_id === selected);
    const mine = e && e.claimed_by === me;
    $("case").hidden = false;
    $("case-id").textContent = selected;
    if (e) {
      $("case-language").textContent = languageName(e.language);
      $("case-reason").textContent = e.reason;
      $("case-summary").textContent = e.summary;
      $("case-actions").textContent = e.actions_taken.length ? e.actions_taken.join("; ") : "nothing yet";
      $("case-owner").textContent = e.claimed_by || "unclaimed";
    } else {
      $("case-owner").textContent = "back with the bot";
    }
    $("claim").hidden = !e || Boolean(e.claimed_by);
    $("pending").hidden = !(e && e.pending_action);
    if (e && e.pending_action) $("pending-text").textContent = pendingText(e.pending_action);
    $("approve").disabled = $("reject").disabled = !mine;
    for (const form of [$("reply"), $("release")]) {
      form.hidden = !mine;
    }
  }

  function line(kind, who, text) {
    const li = el("li", `msg ${kind}`);
    li.append(el("span", "who", who), el("p", "text", text));
    return li;
  }

  function renderEvent(type, ev) {
    if (shown.has(ev.seq)) return;
    shown.add(ev.seq);
    const d = ev.data;
    let node = null;
    switch (type) {
      case "customer_messaged": node = line("customer", "Customer", d.text); break;
      case "reply_sent": node = line("bot", "Bot", d.text); break;
      case "human_replied": node = line("human", d.agent_name, d.text); break;
      case "escalation_requested": node = el("li", "note", `Escalated (priority ${d.priority}): ${d.reason}`); break;
      case "escalation_claimed": node = el("li", "note", `${d.agent_name} claimed the conversation.`); break;
      case "escalation_released":
        node = el("li", "note", `${d.agent_name} handed back to the bot${d.note ? `: ${d.note}` : "."}`);
        break;
      case "action_decided":
        node = el("li", "note", `${d.agent_name} ${d.approved ? "approved" : "rejected"} ${d.idempotency_key}.`);
        break;
      case "action_completed": node = el("li", "note", `Done: ${d.action} (${d.idempotency_key}).`); break;
      default: break;
    }
    if (node) {
      $("transcript").append(node);
      node.scrollIntoView({ block: "nearest" });
    }
  }

  function select(cid) {
    if (stream) stream.stop();
    selected = cid;
    shown = new Set();
    $("transcript").replaceChildren();
    for (const tr of $("queue").children) tr.classList.toggle("selected", tr.dataset.conversation === cid);
    showCase();
    stream = follow(`/v1/console/conversations/${encodeURIComponent(cid)}/events`, key, renderEvent);
  }

  async function act(path, body) {
    try {
      await call("POST", `/v1/conversations/${encodeURIComponent(selected)}/${path}`, key, body);
      showError("");
    } catch (err) {
      showError(err.message);
    }
    await refresh().catch((err) => showError(err.message));
  }

  $("signin").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("key").value.trim()).then(() => showError("")).catch((err) => showError(err.message));
  });
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    window.location.reload();
  });
  $("claim").addEventListener("click", () => act("claim"));
  $("approve").addEventListener("click", () => act("approve"));
  $("reject").addEventListener("click", () => act("reject"));
  $("reply").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("reply-text").value;
    if (!text.trim()) return;
    $("reply-text").value = "";
    act("human-messages", { text });
  });
  $("release").addEventListener("submit", (e) => {
    e.preventDefault();
    const note = $("release-note").value;
    $("release-note").value = "";
    act("release", { note });
  });
  if (key) signIn(key).catch(() => sessionStorage.removeItem(KEY));
  window.addEventListener("beforeunload", () => { if (timer) clearInterval(timer); if (stream) stream.stop(); });
})();
