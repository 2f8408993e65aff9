// Rater page of the bokeh user study: plain JavaScript over the JSON API (/study-api/v1), no framework.
// Everything that comes from the URL or the server is inserted as text (textContent), never as HTML.
"use strict";
(() => {
  const API = "/study-api/v1";
  const MTURK_HOSTS = ["https://www.mturk.com", "https://workersandbox.mturk.com"];
  const PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?cc=";
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const state = {
    study: (params.get("study") || "").trim(),
    rater: "", source: "link", info: null, view: null, score: null, busy: false,
    mturk: null, preview: false, prolific: false, started: false,
  };

  function text(el, value) { el.textContent = value == null ? "" : String(value); }
  function show(id) {
    for (const s of ["start", "item", "end"]) $(s).hidden = s !== id;
    fit();
  }
  function fail(message) { const e = $("error"); text(e, message); e.hidden = !message; }

  function identify() {
    const sources = [["PROLIFIC_PID", "prolific"], ["workerId", "mturk"], ["code", "invite"], ["rater", "link"]];
    for (const [key, source] of sources) {
      const v = (params.get(key) || "").trim();
      if (v) { state.rater = v; state.source = source; break; }
    }
    state.prolific = state.source === "prolific";
    const assignment = params.get("assignmentId");
    if (assignment !== null) {
      const to = (params.get("turkSubmitTo") || "").replace(/\/+$/, "");
      state.mturk = { assignmentId: assignment, submitTo: MTURK_HOSTS.includes(to) ? to : "" };
      state.preview = assignment === "ASSIGNMENT_ID_NOT_AVAILABLE";
    }
  }

  async function call(method, path, body) {
    const init = {
      method, cache: "no-store", credentials: "same-origin",
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    };
    let res;
    for (let attempt = 0; ; attempt++) {
      try {
        res = await fetch(API + path, init);
        break;
      } catch (e) {
        // A dropped connection: every call is safe to repeat (a repeated submit is answered "duplicate").
        if (attempt >= 1) {
          return { ok: false, status: 0, data: { message: "Connection problem: check your network and try again." } };
        }
        await new Promise((r) => setTimeout(r, 400));
      }
    }
    let data = {};
    try { data = await res.json(); } catch (e) { data = { message: `Server error (HTTP ${res.status}).` }; }
    return { ok: res.ok, status: res.status, data };
  }

  // ------------------------------------------------------------------ instructions
  function renderInstructions(info) {
    text($("title"), info.title);
    document.title = info.title;
    if (info.mode === "pairwise") {
      text($("task"), "You will see two renderings of the same photo. Which one looks more like a real camera " +
        "photo (natural background blur, sharp subject, no artefacts)? Choose Left, Right or No preference.");
      text($("question"), "Which looks more like a real camera photo?");
    } else {
      text($("task"), "Each item shows a rendered image and the target photo taken with a DSLR camera, side by " +
        "side (the side changes; the labels say which is which). Compare them, paying attention to the blur " +
        "of the background and the sharpness of the subject, and rate how different the rendered image looks " +
        "from the target:");
      const body = $("scale").querySelector("tbody");
      body.replaceChildren();
      for (const k of ["0", "1", "2", "3", "4"]) {
        const tr = document.createElement("tr");
        const a = document.createElement("td"); text(a, k);
        const b = document.createElement("td"); text(b, info.scale[k]);
        tr.append(a, b); body.append(tr);
      }
      $("scale").hidden = false;
      text($("question"), "How different is the rendered image from the DSLR target?");
    }
    text($("checks"), "Some items are checks; one may carry a written instruction in the image: follow it.");
    text($("min-view"), info.min_view_ms > 0
      ? `Look at both images for at least ${Math.ceil(info.min_view_ms / 1000)} s before you submit.` : "");
    text($("extra"), info.instructions || "");
    buildScores(info);
  }

  function scoreOptions(info) {
    if (info.mode === "pairwise") return [[0, "Left", "0"], [1, "Right", "1"], [2, "No preference", "2"]];
    return [0, 1, 2, 3, 4].map((k) => [k, info.scale[String(k)], String(k)]);
  }

  function buildScores(info) {
    const box = $("scores");
    box.replaceChildren();
    const options = scoreOptions(info);
    box.style.setProperty("--n-scores", options.length);
    for (const [value, label, key] of options) {
      const b = document.createElement("button");
      b.type = "button";
      b.setAttribute("role", "radio");
      b.setAttribute("aria-checked", "false");
      b.dataset.value = String(value);
      b.dataset.key = key;
      const num = document.createElement("span"); num.className = "num";
      text(num, info.mode === "pairwise" ? label : key);
      const lab = document.createElement("span"); lab.className = "lab";
      text(lab, info.mode === "pairwise" ? `key ${key}` : label);
      b.append(num, lab);
      b.addEventListener("click", () => choose(value));
      box.append(b);
    }
  }

  function choose(value) {
    if (state.busy) return;
    state.score = value;
    for (const b of $("scores").children) b.setAttribute("aria-checked", String(b.dataset.value === String(value)));
    feedback("", "");
  }

  function feedback(message, kind) { const f = $("feedback"); text(f, message); f.className = kind || ""; }

  // ------------------------------------------------------------------ start
  function renderStart() {
    show("start");
    if (state.preview) {
      text($("start-note"), "This is a preview of the task. Accept the HIT to start rating.");
      $("start-form").hidden = true;
      return;
    }
    $("rater-label").hidden = Boolean(state.rater);
    // begin() resumes an open session of this rater: say so, so that a returning rater is not worried
    const resume = "If you already started, you continue where you left off.";
    text($("start-note"), state.rater ? resume : `Enter the rater id or invite code you were given. ${resume}`);
  }

  async function begin() {
    if (state.busy) return;
    if (!state.rater) {
      state.rater = $("rater-input").value.trim();
      state.source = "invite";
      if (!state.rater) { fail("Enter your rater id or invite code first."); return; }
    }
    state.busy = true; $("start-btn").disabled = true; $("again-btn").disabled = true; fail("");
    const r = await call("POST", "/begin", { study: state.study, rater: state.rater, source: state.source });
    state.busy = false; $("start-btn").disabled = false; $("again-btn").disabled = false;
    if (!r.ok) { fail(r.data.message || `Could not start (HTTP ${r.status}).`); return; }
    render(r.data);
  }

  // ------------------------------------------------------------------ items
  function render(view) {
    state.view = view;
    if (view.left && !view.done) return renderItem(view);
    return renderEnd(view);
  }

  function renderItem(view) {
    if (!state.started) { $("instructions").open = false; state.started = true; }
    text($("progress"), `Item ${view.position + 1} of ${view.n}`);
    text($("left-label"), view.left.label);
    text($("right-label"), view.right.label);
    $("left-img").src = view.left.src;
    $("right-img").src = view.right.src;
    $("left-img").alt = view.left.label;
    $("right-img").alt = view.right.label;
    for (const src of view.preload || []) { const im = new Image(); im.src = src; }  // next item, ready in cache
    state.score = null;
    for (const b of $("scores").children) b.setAttribute("aria-checked", "false");
    feedback("", "");
    $("submit-btn").disabled = false;
    show("item");
    if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
  }

  async function submit() {
    if (state.busy || !state.view || $("item").hidden) return;
    if (state.score === null) {
      feedback(state.info.mode === "pairwise" ? "Choose Left, Right or No preference first."
        : "Choose a score (0–4) first.", "bad");
      return;
    }
    state.busy = true; $("submit-btn").disabled = true; feedback("Saving…", "");
    const v = state.view;
    const r = await call("POST", `/sessions/${encodeURIComponent(v.session)}/submit`,
      { position: v.position, score: state.score });
    state.busy = false; $("submit-btn").disabled = false;
    if (r.ok) { render(r.data); return; }
    // Rejected: say why next to Submit and keep the item, the chosen score and every control usable.
    feedback(r.data.message || `Not saved (HTTP ${r.status}); try again.`, "bad");
    if (r.data.error === "expired" || r.data.error === "out_of_order" || r.status === 404) {
      const cur = await call("GET", `/sessions/${encodeURIComponent(v.session)}`);
      if (cur.ok && (cur.data.position !== v.position || !cur.data.left)) render(cur.data);
    }
  }

  // ------------------------------------------------------------------ end and hand-off
  function renderEnd(view) {
    text($("progress"), "");
    show("end");
    const code = view.completion_code || "";
    text($("end-title"), view.done ? "Thank you!" : (view.session ? "" : "Nothing to rate"));
    text($("end-message"), view.message);
    $("code-line").hidden = !code;
    text($("code"), code);
    text($("handoff"), "");
    const again = !view.finished && !state.mturk && !state.prolific;
    $("again-btn").hidden = !again;
    text($("again-btn"), view.done ? "Start another session" : "Start again");
    if (!view.done) return;
    if (state.mturk && !state.preview) {
      if (!state.mturk.submitTo) { text($("handoff"), "Paste the completion code into the HIT."); return; }
      const form = $("mturk-form");
      form.action = `${state.mturk.submitTo}/mturk/externalSubmit`;
      $("mturk-assignment").value = state.mturk.assignmentId;
      $("mturk-code").value = code;
      $("mturk-session").value = view.session;
      form.hidden = false;
      text($("handoff"), "Submitting the HIT to MTurk…");
      setTimeout(() => form.submit(), 1200);
      return;
    }
    const url = view.completion_url || (state.prolific && code ? PROLIFIC_COMPLETE + encodeURIComponent(code) : "");
    if (url) {
      const a = document.createElement("a");
      a.href = url; a.rel = "noreferrer";
      text(a, state.prolific ? "Return to Prolific" : "Return to the crowd platform");
      $("handoff").replaceChildren(a);
      if (state.prolific) setTimeout(() => { location.href = url; }, 3000);
    }
  }

  // ------------------------------------------------------------------ keys and layout
  function onKey(ev) {
    if (ev.target && (ev.target.tagName === "INPUT" || ev.target.tagName === "TEXTAREA")) return;
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    if ($("item").hidden) {
      if (ev.key === "Enter" && !$("start").hidden && !state.preview && state.rater) { ev.preventDefault(); begin(); }
      return;
    }
    const button = Array.from($("scores").children).find((b) => b.dataset.key === ev.key);
    if (button) { ev.preventDefault(); choose(Number(button.dataset.value)); return; }
    if (ev.key === "Enter") { ev.preventDefault(); submit(); }
  }

  // Size the images so both, the question, the scores and Submit fit the window (or MTurk's iframe).
  function fit() {
    const pair = $("pair");
    if ($("item").hidden) return;
    const narrow = window.matchMedia("(max-width: 700px)").matches;
    const imgs = [$("left-img"), $("right-img")];
    const imgH = narrow ? imgs[0].offsetHeight + imgs[1].offsetHeight : Math.max(...imgs.map((i) => i.offsetHeight));
    const other = $("app").offsetHeight - imgH;
    const avail = (window.innerHeight - other - 6) / (narrow ? 2 : 1);
    pair.style.setProperty("--img-h", `${Math.max(90, Math.floor(avail))}px`);
  }

  async function init() {
    identify();
    $("start-form").addEventListener("submit", (ev) => { ev.preventDefault(); begin(); });
    $("submit-btn").addEventListener("click", submit);
    $("again-btn").addEventListener("click", begin);
    document.addEventListener("keydown", onKey);
    window.addEventListener("resize", fit);
    $("instructions").addEventListener("toggle", fit);
    for (const img of [$("left-img"), $("right-img")]) img.addEventListener("load", fit);
    if (!state.study) { fail("This link has no study id (?study=...). Please use the link you were given."); return; }
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(state.study)) {  // the only ids a study can have
      fail(`unknown study "${state.study}"; check your link`);
      return;
    }
    const r = await call("GET", `/studies/${encodeURIComponent(state.study)}`);
    if (!r.ok) { fail(r.data.message || "Unknown study."); return; }
    state.info = r.data;
    renderInstructions(r.data);
    renderStart();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
