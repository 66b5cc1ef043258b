// Buttons with data-confirm ask first (a file, not an inline handler: the UI's
// Content-Security-Policy allows no inline script).
for (const button of document.querySelectorAll("[data-confirm]")) {
  button.addEventListener("click", (event) => {
    if (!window.confirm(button.dataset.confirm)) event.preventDefault();
  });
}
