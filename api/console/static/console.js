// Keyboard shortcuts and small conveniences; every page works without this file.
//
// A shortcut never acts while a control has the focus (the key belongs to it: typing, a button
// about to be pressed, a link) nor, for moving away, while a form holds unsaved edits. "a" with
// the edit form open approves the edit, through the guardrails, never the original copy.
(function () {
  "use strict";

  var CONTROLS = /^(INPUT|TEXTAREA|SELECT|BUTTON|SUMMARY|A|IFRAME|DETAILS|LABEL|OPTION)$/;

  function controlFocused() {
    var t = document.activeElement;
    if (!t || t === document.body || t === document.documentElement) { return false; }
    return t.isContentEditable || CONTROLS.test(t.tagName) || t.hasAttribute("tabindex");
  }

  // A form's fields differ from what the page was served with.
  function dirty(form) {
    return Array.prototype.some.call(form.elements, function (field) {
      if (field.type === "hidden" || field.type === "submit" || field.type === "button") { return false; }
      if (field.type === "radio" || field.type === "checkbox") { return field.checked !== field.defaultChecked; }
      return field.value !== field.defaultValue;
    });
  }

  var editable = Array.prototype.slice.call(document.querySelectorAll("form[data-edits]"));
  function unsaved() { return editable.some(dirty); }

  var submitting = false;
  document.addEventListener("submit", function (event) {
    if (!event.defaultPrevented) { submitting = true; }  // a form that asked first may be refused
  });
  window.addEventListener("beforeunload", function (event) {
    if (!submitting && unsaved()) { event.preventDefault(); event.returnValue = ""; }
  });

  var hint = null;
  function say(text) {
    if (!hint) {
      hint = document.createElement("p");
      hint.className = "key-hint";
      hint.setAttribute("role", "status");
      (document.querySelector(".actions") || document.querySelector("main")).appendChild(hint);
    }
    hint.textContent = text;
  }

  function go(id) {
    var link = document.getElementById(id);
    if (!link) { return; }
    if (unsaved()) { say("You have unsaved edits: approve or reject with them, or undo them first."); return; }
    window.location.href = link.href;
  }

  function openDetails(id, focusSelector) {
    var box = document.getElementById(id);
    if (!box) { return; }
    box.open = true;
    var field = box.querySelector(focusSelector);
    if (field) { field.focus(); }
  }

  function approve() {
    var edit = document.getElementById("edit");
    var editForm = document.getElementById("edit-form");
    var reject = document.getElementById("reject-form");
    if (edit && editForm && (edit.open || dirty(editForm))) {
      editForm.requestSubmit();  // the edit, checked by the guardrails; never the original
    } else if (reject && dirty(reject)) {
      say("You have started a rejection: submit it or undo it before approving.");
    } else {
      document.getElementById("approve-form").requestSubmit();
    }
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
    if (event.ctrlKey || event.metaKey || event.altKey || controlFocused()) { return; }
    var key = event.key;
    if (rows.length) {
      if (key === "j") { select(selected + 1); event.preventDefault(); }
      else if (key === "k") { select(selected - 1); event.preventDefault(); }
      else if ((key === "Enter" || key === "o") && selected >= 0) {
        if (unsaved()) { say("You have unsaved changes on this page."); return; }
        window.location.href = rows[selected].dataset.href;
      }
      return;
    }
    if (key === "a" && document.getElementById("approve")) { event.preventDefault(); approve(); }
    else if (key === "j" || key === "n") { go("next"); }
    else if (key === "k" || key === "p") { go("prev"); }
    else if (key === "e") { event.preventDefault(); openDetails("edit", "#subject"); }
    else if (key === "r") { event.preventDefault(); openDetails("reject", "#reject-note"); }
  });

  // Forms that act on many drafts, or send a draft that failed a check, ask first.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
    });
  });

  // Every handler is attached: tests (and anyone scripting the page) wait for this mark, since a
  // key pressed before it (the script is deferred) would be lost.
  document.documentElement.dataset.ready = "true";
})();
