// The dev inbox's progressive enhancements: live list updates (Server-Sent
// Events), the unread count in the title, tabs, preview widths and the reset
// link countdown. Everything works without it, just without live updates.
"use strict";

(function () {
  var baseTitle = document.title.replace(/^\(\d+\) /, "");

  function setUnread(n) {
    document.title = (n > 0 ? "(" + n + ") " : "") + baseTitle;
    document.querySelectorAll('[data-live="unread"]').forEach(function (el) { el.textContent = n; });
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function row(m, csrf) {
    var li = el("li", "message unread");
    li.dataset.id = m.ID;
    var a = el("a", "message-link");
    a.href = "/dev/inbox/" + encodeURIComponent(m.ID);
    var from = el("span", "m-from");
    var dot = el("span", "dot", "●");
    dot.setAttribute("aria-label", "unread");
    from.append(dot, " ", m.From.Name || m.From.Address || "(no sender)");
    var people = m.To.concat(m.Cc, m.Bcc).map(function (p) { return p.Address; }).join(", ");
    var time = el("time", "m-time", new Date(m.Created).toISOString().replace("T", " ").slice(0, 19) + " UTC");
    time.dateTime = m.Created;
    a.append(from, el("span", "m-subject", m.Subject || "(no subject)"),
      el("span", "m-to", "to " + (people || "(no recipients)")), time);
    li.append(a);
    if (csrf) {
      var form = el("form", "inline m-delete");
      form.method = "post";
      form.action = "/dev/inbox/" + encodeURIComponent(m.ID) + "/delete";
      var token = el("input");
      token.type = "hidden"; token.name = "csrf_token"; token.value = csrf;
      var button = el("button", "link", "Delete");
      button.type = "submit";
      form.append(token, button);
      li.append(form);
    }
    return li;
  }

  function liveList(list) {
    if (!window.EventSource) return;
    var live = list.dataset.query === "" && list.dataset.start === "0";
    var csrfInput = document.querySelector('input[name="csrf_token"]');
    var notice = document.getElementById("inbox-new");
    var source = new EventSource("/dev/inbox/events");
    source.addEventListener("new", function (e) {
      var m = JSON.parse(e.data);
      if (!live) { if (notice) notice.hidden = false; return; }
      var empty = list.querySelector("li.empty");
      if (empty) empty.remove();
      list.prepend(row(m, csrfInput ? csrfInput.value : ""));
    });
    source.addEventListener("stats", function (e) {
      var s = JSON.parse(e.data);
      setUnread(s.unread);
      document.querySelectorAll('[data-live="total"]').forEach(function (n) {
        n.textContent = s.total + " " + (s.total === 1 ? n.dataset.one : n.dataset.many);
      });
    });
    source.addEventListener("read", function (e) {
      var d = JSON.parse(e.data);
      (d.IDs || []).forEach(function (id) {
        var li = list.querySelector('li[data-id="' + CSS.escape(id) + '"]');
        if (!li) return;
        li.classList.toggle("unread", !d.Read);
        var dot = li.querySelector(".dot");
        if (d.Read && dot) dot.remove();
      });
    });
    source.addEventListener("delete", function (e) {
      var d = JSON.parse(e.data);
      if (d.IDs === null) { window.location.reload(); return; }
      d.IDs.forEach(function (id) {
        var li = list.querySelector('li[data-id="' + CSS.escape(id) + '"]');
        if (li) li.remove();
      });
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  function tabs(box) {
    var links = box.querySelectorAll(".tab-list a");
    var panels = box.querySelectorAll(".tab-panel");
    function show(id) {
      var found = false;
      panels.forEach(function (p) { var on = p.id === id; p.classList.toggle("active", on); found = found || on; });
      if (!found) { return false; }
      links.forEach(function (a) { a.setAttribute("aria-current", a.hash === "#" + id ? "true" : "false"); });
      return true;
    }
    box.classList.add("js");
    links.forEach(function (a) {
      a.addEventListener("click", function (e) {
        e.preventDefault();
        show(a.hash.slice(1));
        history.replaceState(null, "", a.hash);
      });
    });
    var initial = location.hash.slice(1);
    var fallback = box.querySelector(".tab-panel.default");
    if (!initial || !show(initial)) show(fallback ? fallback.id : panels[0].id);
  }

  function widths(group) {
    var frame = document.querySelector(".mail-frame");
    if (!frame) return;
    group.hidden = false;
    group.querySelectorAll("button").forEach(function (b) {
      b.addEventListener("click", function () {
        frame.style.width = b.dataset.width;
        group.querySelectorAll("button").forEach(function (o) { o.setAttribute("aria-pressed", String(o === b)); });
      });
    });
  }

  function countdowns() {
    var nodes = document.querySelectorAll(".countdown[data-expires]");
    if (!nodes.length) return;
    function tick() {
      var now = Date.now() / 1000;
      nodes.forEach(function (n) {
        var left = Math.floor(Number(n.dataset.expires) - now);
        if (left <= 0) { n.textContent = "expired"; return; }
        var mm = String(Math.floor(left / 60)).padStart(2, "0");
        var ss = String(left % 60).padStart(2, "0");
        n.textContent = "expires in " + mm + ":" + ss;
      });
    }
    tick();
    setInterval(tick, 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var list = document.getElementById("messages");
    if (list) liveList(list);
    var box = document.getElementById("tabs");
    if (box) tabs(box);
    var group = document.querySelector(".widths");
    if (group) widths(group);
    countdowns();
  });
})();
