"use strict";
// Shared by the chat page and the console: JSON calls with a bearer token, and a reader for the
// API's Server-Sent Events built on fetch, because EventSource cannot send an Authorization header.
window.deskline = (() => {
  const base = (window.DESKLINE_API || "").replace(/\/$/, "");

  async function call(method, path, token, body) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(base + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const err = new Error(data.message || `request failed (HTTP ${res.status})`);
      err.status = res.status;
      err.body = data;
      throw err;
    }
    return data;
  }

  function parseBlock(block) {
    let id = null, type = "message", data = "";
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;  // comments are heartbeats
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
      if (field === "id") id = value;
      else if (field === "event") type = value;
      else if (field === "data") data += (data ? "\n" : "") + value;
    }
    return { id, type, data };
  }

  // Follow an event stream until stop(); after a drop, reconnect and resume with Last-Event-ID.
  function follow(path, token, onEvent, onState) {
    let last = 0, stopped = false, controller = null;
    const state = (s, e) => onState && onState(s, e);

    async function once() {
      controller = new AbortController();
      const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token}` };
      if (last) headers["Last-Event-ID"] = String(last);
      const res = await fetch(base + path, { headers, signal: controller.signal, cache: "no-store" });
      if (!res.ok) {
        const err = new Error(`stream refused (HTTP ${res.status})`);
        err.status = res.status;
        err.retryAfter = Number(res.headers.get("Retry-After")) || 0;  // 429: too many open streams
        throw err;
      }
      state("open");
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = parseBlock(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (frame.id !== null && /^\d+$/.test(frame.id)) last = Math.max(last, Number(frame.id));
          if (frame.data) onEvent(frame.type, JSON.parse(frame.data));
        }
      }
    }

    // The server pages the log into the stream (a long conversation arrives in several reads), and
    // ends the stream when the token or key stops being valid: the reconnect then gets 401/404.
    (async () => {
      while (!stopped) {
        let wait = 1000;
        try {
          await once();
        } catch (err) {
          if (stopped) return;
          if (err.status === 401 || err.status === 403 || err.status === 404) { state("denied", err); return; }
          if (err.status === 429) wait = Math.min(Math.max(err.retryAfter, 1), 60) * 1000;
        }
        if (stopped) return;
        state("reconnecting");
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    })();
    return { stop() { stopped = true; if (controller) controller.abort(); } };
  }

  function randomId() {  // crypto.randomUUID needs a secure context; this does not
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;  // never innerHTML: text is untrusted
    return node;
  }

  return { call, follow, randomId, el };
})();
