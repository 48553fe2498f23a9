// Small helpers for the server-rendered pages (no inline scripts: the CSP forbids them).
document.querySelectorAll("[data-print]").forEach((b) => b.addEventListener("click", () => window.print()));
