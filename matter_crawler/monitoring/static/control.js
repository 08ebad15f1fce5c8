// Live control of the crawl: pause, resume, stop, switch profile (POST /control/<command>).
// The crawl's token is asked for once and kept in this tab's sessionStorage (this origin
// only); the server never sends it. Commands carry the custom header and the token, which a
// page of another origin cannot send (see docs/security.md). Values go in with textContent.
"use strict";

(function () {
  const byId = (id) => document.getElementById(id);
  const KEY = "matter-crawler-control-token";
  let pending = null; // the command waiting for a token

  function message(text, bad) {
    const node = byId("control-message");
    node.textContent = text;
    if (bad) node.dataset.bad = "";
    else delete node.dataset.bad;
  }

  function show(state) {
    const node = byId("control-state");
    node.textContent = state.state;
    node.dataset.state = state.state;
    byId("control-profile").textContent = state.profile;
    byId("control-token-file").textContent = state.token_file || "";
    const select = byId("control-profiles");
    if (!select.options.length) {
      for (const name of state.profiles || []) {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        select.appendChild(option);
      }
      select.value = state.profile;
    }
    const live = !["stopping", "closed", "starting", "off"].includes(state.state);
    byId("control-pause").disabled = !live || state.state !== "running";
    byId("control-resume").disabled = !live || state.state === "running";
    byId("control-stop").disabled = !live;
    byId("control-switch").disabled = !live;
  }

  function refresh() {
    return fetch("control")
      .then((answer) => (answer.ok ? answer.json() : null))
      .then((state) => {
        if (!state) return;
        byId("control").hidden = false;
        show(state);
      })
      .catch(() => {});
  }

  function ask(command, body) {
    pending = [command, body];
    byId("control-ask").hidden = false;
    byId("control-token").focus();
    message("The crawl asks for its control token.");
  }

  function send(command, body) {
    const token = sessionStorage.getItem(KEY);
    if (!token) return ask(command, body);
    return fetch("control/" + command, {
      method: "POST",
      headers: {
        "X-Matter-Control": "1",
        Authorization: "Bearer " + token,
        "Content-Type": "application/json",
      },
      body: JSON.stringify(body || {}),
    })
      .then((answer) =>
        answer.json().then((data) => {
          if (answer.status === 401) {
            sessionStorage.removeItem(KEY);
            ask(command, body);
            message("That token was refused.", true);
            return;
          }
          if (!answer.ok) {
            message(data.error || "refused (" + answer.status + ")", true);
            return;
          }
          message(""); // the state shown says what happened
          show(data);
        }),
      )
      .catch((error) => message("could not reach the crawl: " + error, true));
  }

  byId("control-use").addEventListener("click", () => {
    const token = byId("control-token").value.trim();
    if (!token) return;
    sessionStorage.setItem(KEY, token);
    byId("control-token").value = "";
    byId("control-ask").hidden = true;
    if (pending) {
      const [command, body] = pending;
      pending = null;
      send(command, body);
    }
  });
  byId("control-pause").addEventListener("click", () => send("pause"));
  byId("control-resume").addEventListener("click", () => send("resume"));
  byId("control-stop").addEventListener("click", () => {
    if (window.confirm("Stop the crawl? It stops as on Ctrl-C; a JOBDIR crawl can resume.")) {
      send("stop");
    }
  });
  byId("control-switch").addEventListener("click", () =>
    send("profile", { profile: byId("control-profiles").value }),
  );

  refresh();
  setInterval(refresh, 1000);
})();
