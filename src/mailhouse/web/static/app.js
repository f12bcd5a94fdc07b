// Mailhouse webmail: keyboard shortcuts, live updates (server-sent events), small helpers.
// No inline script anywhere: the CSP allows scripts from 'self' only.
(function () {
  "use strict";
  const body = document.body;
  const csrf = body.dataset.csrf;

  // ---- phone layout: folder drawer
  const toggle = document.getElementById("menu-toggle");
  if (toggle) toggle.addEventListener("click", () => body.classList.toggle("show-folders"));

  // ---- confirmations
  document.addEventListener("submit", (e) => {
    const f = e.target;
    const btn = e.submitter;
    const msg = (btn && btn.dataset.confirm) || f.dataset.confirm;
    if (msg && !window.confirm(msg)) e.preventDefault();
  }, true);

  // ---- select all
  function wireList() {
    const all = document.getElementById("selectall");
    if (all) all.addEventListener("change", () => {
      document.querySelectorAll("#listform input[name=uid]").forEach((c) => { c.checked = all.checked; });
    });
    cursor = Math.min(cursor, rows().length - 1);
    highlight();
  }

  // ---- keyboard shortcuts
  let cursor = -1;
  function rows() { return Array.from(document.querySelectorAll("ul.messages li.msg")); }
  function highlight() {
    rows().forEach((r, i) => r.classList.toggle("cursor", i === cursor));
    const r = rows()[cursor];
    if (r) r.scrollIntoView({ block: "nearest" });
  }
  function postAction(action, uid) {
    const form = document.createElement("form");
    form.method = "post";
    form.action = "/mail/" + body.dataset.mailbox + "/action";
    for (const [k, v] of [["csrf", csrf], ["action", action], ["uid", uid]]) {
      const i = document.createElement("input");
      i.type = "hidden"; i.name = k; i.value = v; form.appendChild(i);
    }
    document.body.appendChild(form);
    form.submit();
  }
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) {
      if (e.key === "Escape") t.blur();
      return;
    }
    const msg = body.dataset.message;
    const go = (url) => { window.location.href = url; };
    switch (e.key) {
      case "j": if (rows().length) { cursor = Math.min(cursor + 1, rows().length - 1); highlight(); } break;
      case "k": if (rows().length) { cursor = Math.max(cursor - 1, 0); highlight(); } break;
      case "o": case "Enter": { const r = rows()[cursor]; if (r) go(r.dataset.href); else return; break; }
      case "c": go("/compose"); break;
      case "r": { const a = document.getElementById("reply"); if (a) go(a.href); else return; break; }
      case "a": { const a = document.getElementById("replyall"); if (a) go(a.href); else return; break; }
      case "f": { const a = document.getElementById("forward"); if (a) go(a.href); else return; break; }
      case "u": { const a = document.getElementById("back"); if (a) go(a.href); else return; break; }
      case "#": case "Delete": {
        if (msg) { postAction("delete", body.dataset.uid); break; }
        const r = rows()[cursor];
        if (r) postAction("delete", r.querySelector("input[name=uid]").value); else return;
        break;
      }
      case "/": { const s = document.getElementById("search"); if (s) s.focus(); break; }
      case "?": { const h = document.getElementById("help"); if (h && h.showModal) h.showModal(); break; }
      default: return;
    }
    e.preventDefault();
  });

  // ---- live updates
  const toast = document.getElementById("toast");
  function say(text) {
    if (!toast) return;
    toast.textContent = text; toast.hidden = false;
    clearTimeout(say.t); say.t = setTimeout(() => { toast.hidden = true; }, 4000);
  }
  let pending = null;
  async function refresh(kind) {
    const listUrl = body.dataset.listUrl;
    const mb = body.dataset.mailbox;
    const url = listUrl || (mb ? "/mail/" + mb + "/list" : null);
    if (!url) return;
    try {
      const r = await fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } });
      if (!r.ok) return;
      const data = await r.json();
      const folders = document.getElementById("folders");
      if (folders) folders.innerHTML = data.folders;
      const list = document.getElementById("list");
      if (list && listUrl) {
        const selected = new Set(Array.from(list.querySelectorAll("input[name=uid]:checked")).map((c) => c.value));
        list.innerHTML = data.list;
        list.querySelectorAll("input[name=uid]").forEach((c) => { if (selected.has(c.value)) c.checked = true; });
        wireList();
      }
      if (kind === "append") say("New mail");
    } catch (err) { /* offline: the next event retries */ }
  }
  if (body.dataset.mailbox && window.EventSource) {
    const es = new EventSource("/events");
    es.addEventListener("change", (ev) => {
      let kind = "";
      try { kind = JSON.parse(ev.data).kind; } catch (err) { /* ignore */ }
      clearTimeout(pending);
      pending = setTimeout(() => refresh(kind), 150);
    });
    window.addEventListener("beforeunload", () => es.close());
  }

  wireList();
})();
