"use strict";
// The customer's chat window: open a conversation, send messages, and render the conversation
// from its live event stream (the reply, a person joining, their replies, the hand-back).
(() => {
  const { call, follow, randomId, el } = window.deskline;
  const KEY = "deskline.chat";
  const $ = (id) => document.getElementById(id);
  const messages = $("messages");
  let session = JSON.parse(sessionStorage.getItem(KEY) || "null");
  let stream = null;
  let shown = new Set();
  let language = "";  // the language the desk answers this conversation in (marks the bubbles' lang)

  function showError(text) {
    $("error").textContent = text || "";
    $("error").hidden = !text;
  }

  function add(node) {
    messages.append(node);
    node.scrollIntoView({ block: "end" });
    return node;
  }

  function bubble(kind, who, text, clientId) {
    const li = el("li", `msg ${kind}`);
    li.append(el("span", "who", who), el("p", "text", text));
    if (clientId) li.dataset.clientId = clientId;
    if (language && kind !== "human") li.lang = language;
    return add(li);
  }

  function note(text) { return add(el("li", "note", text)); }

  function setStatus(state, text) {
    $("status").dataset.state = state;
    $("status").textContent = text;
  }

  function render(type, ev) {
    if (shown.has(ev.seq)) return;
    shown.add(ev.seq);
    switch (type) {
      case "customer_messaged": {
        if (ev.language) language = ev.language;
        const mine = ev.client_message_id
          && messages.querySelector(`[data-client-id="${CSS.escape(ev.client_message_id)}"]`);
        if (mine) {
          mine.classList.remove("pending");
          if (language) mine.lang = language;
        }
        else bubble("customer", "You", ev.text);
        break;
      }
      case "reply_sent": bubble("bot", "Assistant", ev.text); break;
      case "human_replied": bubble("human", ev.agent, ev.text); break;
      case "escalation_requested":
        setStatus("waiting", "Waiting for a person");
        note("A person from our team will join this conversation.");
        break;
      case "escalation_claimed":
        setStatus("human", `${ev.agent} is helping you`);
        note(`${ev.agent} joined the conversation.`);
        break;
      case "escalation_released":
        setStatus("bot", "Assistant");
        note(`${ev.agent} handed the conversation back to the assistant.`);
        break;
      case "action_decided":
        note(ev.approved ? `${ev.agent} approved the pending request.` : `${ev.agent} declined the pending request.`);
        break;
      default: break;
    }
  }

  async function start() {
    showError("");
    if (!session) {
      // The host site signs its customer in and hands the page a short-lived token in the URL's
      // fragment (#customer_token=...), which never reaches a server log; without one the
      // conversation is anonymous.
      const params = new URLSearchParams(location.hash.slice(1));
      const customerToken = params.get("customer_token");
      if (customerToken) history.replaceState(null, "", location.pathname + location.search);
      const created = await call("POST", "/v1/conversations", undefined,
        customerToken ? { customer_token: customerToken } : undefined);
      session = { id: created.id, token: created.token };
      sessionStorage.setItem(KEY, JSON.stringify(session));
    }
    $("conversation").textContent = session.id;
    stream = follow(`/v1/conversations/${encodeURIComponent(session.id)}/events`, session.token, render,
      (state) => {
        document.body.dataset.stream = state;
        if (state === "denied") restart();  // the conversation is gone (e.g. another database)
      });
  }

  function restart() {
    if (stream) stream.stop();
    sessionStorage.removeItem(KEY);
    session = null;
    shown = new Set();
    messages.replaceChildren();
    setStatus("bot", "Assistant");
    start().catch((err) => showError(err.message));
  }

  async function send(text) {
    const clientId = randomId();
    const mine = bubble("customer pending", "You", text, clientId);
    $("typing").hidden = false;
    try {
      await call("POST", `/v1/conversations/${encodeURIComponent(session.id)}/messages`, session.token,
        { text, client_message_id: clientId });
      showError("");
    } catch (err) {
      mine.remove();
      $("text").value = text;
      showError(err.message);
    } finally {
      $("typing").hidden = true;
    }
  }

  $("compose").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text").value;
    if (!text.trim() || !session) return;
    $("text").value = "";
    send(text);
  });
  $("text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("compose").requestSubmit(); }
  });
  $("restart").addEventListener("click", (e) => { e.preventDefault(); restart(); });
  start().catch((err) => showError(err.message));
})();
