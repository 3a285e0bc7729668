// The dev inbox's progressive enhancements: live list updates (Server-Sent
// Events), the unread count in the title and on the favicon, tabs, preview
// widths and the reset link countdown. Everything works without it, just
// without live updates.
"use strict";

(function () {
  // Where the inbox is served: /dev/inbox under [server] public_url's path.
  var baseMeta = document.querySelector('meta[name="resetd-inbox"]');
  var inboxBase = baseMeta ? baseMeta.content : "/dev/inbox";
  var baseTitle = document.title.replace(/^\(\d+\) /, "");

  // The unread count as a badge on the favicon: the site icon drawn onto a
  // canvas with the number over its corner, swapped in as a data: URL (the
  // inbox pages' CSP allows img-src data:). Zero puts the plain icon back.
  var favicon = (function () {
    var link = document.querySelector('link[rel="icon"]');
    if (!link) return function () {};
    var plain = { href: link.href, type: link.type };
    var base = new Image();
    var ready = false;
    var wanted = 0;
    var shown = 0;

    function draw() {
      if (wanted === shown) return;
      shown = wanted;
      if (wanted <= 0) {
        link.type = plain.type;
        link.href = plain.href;
        return;
      }
      var size = 64;
      var canvas = document.createElement("canvas");
      canvas.width = canvas.height = size;
      var ctx = canvas.getContext("2d");
      if (!ctx) return;
      if (ready) {
        ctx.drawImage(base, 0, 0, size, size);
      } else {
        ctx.fillStyle = "#2f6fde";
        ctx.fillRect(0, 0, size, size);
      }
      var text = wanted > 99 ? "99+" : String(wanted);
      ctx.font = "bold " + (text.length > 2 ? 28 : 36) + "px sans-serif";
      var h = 40;
      var w = Math.min(size, Math.max(h, ctx.measureText(text).width + 14));
      var x = size - w;
      var y = size - h;
      ctx.fillStyle = "#d42a1e";
      ctx.beginPath();
      ctx.arc(x + h / 2, y + h / 2, h / 2, Math.PI / 2, Math.PI * 1.5);
      ctx.arc(size - h / 2, y + h / 2, h / 2, Math.PI * 1.5, Math.PI / 2);
      ctx.closePath();
      ctx.fill();
      ctx.fillStyle = "#fff";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(text, x + w / 2, y + h / 2 + 2);
      link.type = "image/png";
      link.href = canvas.toDataURL("image/png");
    }

    function loaded() { if (wanted > 0) { shown = -1; draw(); } }
    base.onload = function () { ready = true; loaded(); };
    base.onerror = loaded;
    base.src = plain.href;
    return function (n) { wanted = n; if (base.complete) draw(); };
  })();

  function setUnread(n) {
    document.title = (n > 0 ? "(" + n + ") " : "") + baseTitle;
    document.querySelectorAll('[data-live="unread"]').forEach(function (el) { el.textContent = n; });
    favicon(n);
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
    a.href = inboxBase + "/" + encodeURIComponent(m.ID);
    var from = el("span", "m-from");
    var dot = el("span", "dot", "●");
    dot.setAttribute("aria-label", "unread");
    from.append(dot, " ", m.From.Name || m.From.Address || "(no sender)");
    var all = m.To.concat(m.Cc, m.Bcc);
    var people = all.slice(0, 10).map(function (p) { return p.Address; }).join(", ");
    var more = m.More !== undefined ? m.More : Math.max(0, all.length - 10);
    if (more) people += " and " + more + " more";
    var time = el("time", "m-time", new Date(m.Created).toISOString().replace("T", " ").slice(0, 19) + " UTC");
    time.dateTime = m.Created;
    var subject = el("span", "m-subject", m.Subject || "(no subject)");
    (m.Tags || []).forEach(function (t) { subject.append(" ", el("span", "tag", t)); });
    a.append(from, subject,
      el("span", "m-to", "to " + (people || "(no recipients)")), time);
    li.append(a);
    if (csrf) {
      var form = el("form", "inline m-delete");
      form.method = "post";
      form.action = inboxBase + "/" + encodeURIComponent(m.ID) + "/delete";
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
    var counter = document.querySelector('[data-live="unread"]');
    if (counter) setUnread(Number(counter.textContent) || 0);
    var source = new EventSource(inboxBase + "/events");
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
    var fallback = box.querySelector(".tab-panel.default");
    function fromHash() {
      var wanted = location.hash.slice(1);
      if (!wanted || !show(wanted)) show(fallback ? fallback.id : panels[0].id);
    }
    fromHash();
    // An edited address bar or a link to #tab-… changes only the hash: no reload.
    window.addEventListener("hashchange", fromHash);
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
