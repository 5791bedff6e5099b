// theme.js runs before the page paints (a plain script, not a module) so a
// theme chosen with the toggle shows without a flash. The toggle itself is
// wired in app.js.
(function () {
  try {
    var t = localStorage.getItem("rn-theme");
    if (t === "light" || t === "dark") document.documentElement.setAttribute("data-theme", t);
  } catch (e) { /* storage blocked: follow the system */ }
})();
