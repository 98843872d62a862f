// Small behaviours that htmx does not cover. No inline scripts: the pages run under a CSP.
document.addEventListener("click", function (event) {
  var choice = event.target.closest(".folder-choice");
  if (choice) {
    var input = document.getElementById("folder");
    if (input) { input.value = choice.dataset.folder; input.focus(); }
  }
});

// The mailbox form: show the password or the OAuth2 settings for the chosen sign-in.
function showSignIn() {
  var method = document.getElementById("auth_method");
  if (!method) { return; }
  var oauth = method.value === "oauth2";
  document.querySelectorAll(".oauth-settings").forEach(function (el) { el.hidden = !oauth; });
  document.querySelectorAll(".password-only").forEach(function (el) { el.hidden = oauth; });
}
document.addEventListener("change", function (event) {
  if (event.target.id === "auth_method") { showSignIn(); }
});
document.addEventListener("DOMContentLoaded", showSignIn);

// Copy buttons (the OAuth2 redirect URI).
document.addEventListener("click", function (event) {
  var button = event.target.closest("button.copy");
  if (!button) { return; }
  var source = document.querySelector(button.dataset.copy);
  if (!source || !navigator.clipboard) { return; }
  navigator.clipboard.writeText(source.textContent.trim()).then(function () {
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = "Copy"; }, 1500);
  });
});
