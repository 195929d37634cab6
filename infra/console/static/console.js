// Draws the overview's workflow diagram with the vendored Mermaid, if it
// loaded; without it the diagram's text stays shown. No inline script:
// the Content-Security-Policy allows scripts from /console/static/ only.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  if (typeof window.mermaid === "undefined") {
    return;
  }
  window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
  window.mermaid.run({ querySelector: "pre.mermaid" }).catch(function (err) {
    document.getElementById("workflow").setAttribute("data-error", String(err));
  });
});
