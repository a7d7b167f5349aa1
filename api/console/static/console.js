// Keyboard shortcuts and small conveniences; every page works without this file.
(function () {
  "use strict";

  function typing(event) {
    var t = event.target;
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }

  function go(id) {
    var link = document.getElementById(id);
    if (link) { window.location.href = link.href; }
  }

  function openDetails(id, focusSelector) {
    var box = document.getElementById(id);
    if (!box) { return; }
    box.open = true;
    var field = box.querySelector(focusSelector);
    if (field) { field.focus(); }
  }

  // The review queue: j/k move the selection, Enter opens it.
  var rows = Array.prototype.slice.call(document.querySelectorAll("[data-keynav] tbody tr"));
  var selected = -1;
  function select(index) {
    if (!rows.length) { return; }
    if (selected >= 0) { rows[selected].classList.remove("selected"); }
    selected = Math.max(0, Math.min(rows.length - 1, index));
    rows[selected].classList.add("selected");
    rows[selected].scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event)) { return; }
    var key = event.key;
    if (rows.length) {
      if (key === "j") { select(selected + 1); event.preventDefault(); }
      else if (key === "k") { select(selected - 1); event.preventDefault(); }
      else if ((key === "Enter" || key === "o") && selected >= 0) { window.location.href = rows[selected].dataset.href; }
      return;
    }
    if (key === "a" && document.getElementById("approve")) {
      event.preventDefault();
      document.getElementById("approve-form").requestSubmit();
    } else if (key === "j" || key === "n") { go("next"); }
    else if (key === "k" || key === "p") { go("prev"); }
    else if (key === "e") { event.preventDefault(); openDetails("edit", "#subject"); }
    else if (key === "r") { event.preventDefault(); openDetails("reject", "#reject-note"); }
  });

  // Forms that act on many drafts ask first.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
    });
  });

  // Every handler is attached: tests (and anyone scripting the page) wait for this mark, since a
  // key pressed before it (the script is deferred) would be lost.
  document.documentElement.dataset.ready = "true";
})();
