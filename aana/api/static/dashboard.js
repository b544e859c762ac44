// Reloads the dashboard's panels every few seconds without reloading the page.
// The server renders (and escapes) the HTML; this only swaps it in.
"use strict";

(function () {
  const panels = document.getElementById("panels");
  const banner = document.getElementById("refresh-error");
  if (!panels || !banner) {
    return;
  }
  const seconds = Number(panels.dataset.refreshSeconds) || 5;
  let running = false;

  function showError(text) {
    banner.textContent = text;
    banner.hidden = false;
  }

  async function refresh() {
    if (running) {
      return;
    }
    running = true;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), seconds * 2000);
    try {
      const response = await fetch("panels", {
        signal: controller.signal,
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
      const html = await response.text();
      panels.innerHTML = html;
      if (response.ok) {
        banner.hidden = true;
        banner.textContent = "";
        document.body.dataset.refreshedAt = String(Date.now());
      } else {
        showError("Refreshing failed (HTTP " + response.status + "); showing the error below.");
      }
    } catch (error) {
      showError(
        "The dashboard could not be refreshed (" +
          (error && error.name === "AbortError" ? "no answer in time" : "server unreachable") +
          "); the figures below may be out of date."
      );
    } finally {
      clearTimeout(timer);
      running = false;
    }
  }

  setInterval(refresh, seconds * 1000);
})();
