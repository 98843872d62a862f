// Small behaviours that htmx does not cover. No inline scripts: the pages run under a CSP.
document.addEventListener("click", function (event) {
  var choice = event.target.closest(".folder-choice");
  if (choice) {
    var input = document.getElementById("folder");
    if (input) { input.value = choice.dataset.folder; input.focus(); }
  }
});
