// Mailhouse webmail: To/Cc/Bcc autocomplete from the address book (web/contacts.py suggest).
// A WAI-ARIA 1.2 combobox with a listbox popup: the input keeps focus, arrow keys move the
// active option (aria-activedescendant), Enter or Tab picks it, Escape closes. Loaded from
// 'self' only (CSP): no inline script. Without JavaScript the fields are plain inputs.
(function () {
  "use strict";
  const csrf = document.body.dataset.csrf;
  const MAX = 8;
  let seq = 0;

  function currentToken(value) {
    // the entry being typed: after the last comma or semicolon
    const i = Math.max(value.lastIndexOf(","), value.lastIndexOf(";"));
    return { head: value.slice(0, i + 1), token: value.slice(i + 1).trim() };
  }

  function attach(input) {
    const id = input.id + "-suggestions";
    const list = document.createElement("ul");
    list.id = id;
    list.className = "ac-list";
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "Suggestions for " + input.id.toUpperCase());
    list.hidden = true;
    input.insertAdjacentElement("afterend", list);
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", id);
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("autocomplete", "off");
    const label = input.closest("label");
    if (label) {
      label.classList.add("ac-wrap");
      // the popup sits inside the <label>: name the field explicitly so the options' text
      // never becomes part of its accessible name
      const own = Array.from(label.childNodes).filter((n) => n.nodeType === Node.TEXT_NODE);
      input.setAttribute("aria-label", own.map((n) => n.textContent).join(" ").trim() || input.name);
    }
    let items = [];
    let active = -1;
    let timer = 0;

    function close() {
      list.hidden = true;
      list.replaceChildren();
      items = [];
      active = -1;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
    }
    function setActive(i) {
      active = i;
      Array.from(list.children).forEach((li, j) => li.setAttribute("aria-selected", j === i ? "true" : "false"));
      if (i >= 0) {
        input.setAttribute("aria-activedescendant", list.children[i].id);
        list.children[i].scrollIntoView({ block: "nearest" });
      } else {
        input.removeAttribute("aria-activedescendant");
      }
    }
    function pick(i) {
      const it = items[i];
      if (!it) return;
      const { head } = currentToken(input.value);
      input.value = (head ? head.trimEnd() + " " : "") + it.value + ", ";
      close();
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
    }
    function show(found) {
      items = found.slice(0, MAX);
      list.replaceChildren();
      items.forEach((it, i) => {
        const li = document.createElement("li");
        li.id = id + "-" + i;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.dataset.kind = it.kind;
        li.textContent = it.kind === "group" ? it.name : (it.name || it.address);
        const extra = document.createElement("span");
        extra.className = "muted";
        extra.textContent = it.kind === "group" ? "group" : (it.name ? it.address : "");
        li.appendChild(extra);
        li.addEventListener("mousedown", (e) => { e.preventDefault(); pick(i); });
        list.appendChild(li);
      });
      if (!items.length) { close(); return; }
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      setActive(-1);
    }
    async function lookup() {
      const { token } = currentToken(input.value);
      if (!token) { close(); return; }
      const mine = ++seq;
      try {
        const r = await fetch("/contacts/suggest?q=" + encodeURIComponent(token), {
          credentials: "same-origin",
          headers: { "Accept": "application/json", "X-CSRF-Token": csrf },
        });
        if (!r.ok || mine !== seq) return;
        const data = await r.json();
        if (mine === seq && document.activeElement === input) show(data.items || []);
      } catch (e) { /* offline: the field stays a plain input */ }
    }
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(lookup, 120);
    });
    input.addEventListener("keydown", (e) => {
      if (list.hidden) {
        if (e.key === "ArrowDown" && input.value.trim()) { lookup(); e.preventDefault(); }
        return;
      }
      switch (e.key) {
        case "ArrowDown": setActive((active + 1) % items.length); e.preventDefault(); break;
        case "ArrowUp": setActive(active <= 0 ? items.length - 1 : active - 1); e.preventDefault(); break;
        case "Enter":
          // picks the active suggestion; with none active it only closes the list (never sends)
          if (active >= 0) pick(active); else close();
          e.preventDefault();
          break;
        case "Tab":
          if (active >= 0 || items.length === 1) { pick(active >= 0 ? active : 0); e.preventDefault(); }
          break;
        case "Escape": close(); e.preventDefault(); e.stopPropagation(); break;
        default: break;
      }
    });
    input.addEventListener("blur", () => setTimeout(close, 150));
  }

  for (const name of ["to", "cc", "bcc"]) {
    const input = document.querySelector("form#compose input#" + name);
    if (input) attach(input);
  }
})();
