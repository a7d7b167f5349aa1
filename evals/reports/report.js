// Size each email's iframe to its content. The frames may not run scripts of their own; this
// page may read them because they are same-origin srcdoc documents.
for (const frame of document.querySelectorAll("iframe")) {
  const fit = () => {
    const doc = frame.contentDocument;
    if (doc && doc.documentElement) {
      frame.style.height = "0px"; // so the document measures its content, not the old frame
      frame.style.height = doc.documentElement.scrollHeight + 2 + "px";
    }
  };
  frame.addEventListener("load", fit);
  fit();
}
