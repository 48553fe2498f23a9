// Live session page: WebSocket frames -> readouts and a canvas chart; commands over the API.
(function () {
  "use strict";
  const csrf = document.body.dataset.csrf;
  const me = document.getElementById("live").dataset.user;
  const LB = 0.2248089431;
  const PHASES = ["slack", "ramp up", "hold", "ramp down", "rest", "paused", "resuming", "ending", "done", "release"];
  const STATES = ["idle", "ready", "running", "paused", "releasing", "completed", "aborted"];
  const BAND = {1: "#e8f0fb", 2: "#d6f0e0", 3: "#e8f0fb", 4: "#f5f5f5", 5: "#fff4d6", 9: "#fde0e0"};
  const WINDOW_S = 60;
  let frames = [];
  let received = 0;
  let sessionId = null;  // the stored session of the current / last run
  let ended = false;     // after the end, alarms are acknowledged on the stored record
  const $ = (id) => document.getElementById(id);

  async function api(path, body) {
    const r = await fetch("/api/v1" + path, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: JSON.stringify(body || {})});
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      const d = data.detail;
      throw new Error(typeof d === "string" ? d : JSON.stringify(d));
    }
    return data;
  }
  function show(el, msg) { $(el).textContent = msg || ""; }

  $("start").addEventListener("click", async () => {
    const pid = $("patient").value;
    const body = {protocol: $("protocol").value, body_weight_kg: Number($("weight").value),
      switch_tested: $("switch-tested").checked, harness_checked: $("harness-checked").checked,
      patient_id: pid ? Number(pid) : null};
    if ($("angle").value !== "") body.angle_deg = Number($("angle").value);
    try { show("setup-msg", ""); status(await api("/live/start", body)); } catch (e) { show("setup-msg", e.message); }
  });
  async function command(body) {
    try { show("cmd-msg", ""); await api("/live/command", body); } catch (e) { show("cmd-msg", e.message); }
  }
  document.querySelectorAll("[data-edit]").forEach((b) => b.addEventListener("click", () => {
    const v = Number($(b.dataset.input).value);
    command({kind: "edit", field: b.dataset.edit, value: v, unit: b.dataset.unit, reason: "adjusted on the live page"});
  }));
  $("pause").addEventListener("click", () => command({kind: "pause"}));
  $("resume").addEventListener("click", () => command({kind: "resume"}));
  $("end").addEventListener("click", () => command({kind: "stop", reason: "ended early from the live page"}));
  $("stop").addEventListener("click", () => command({kind: "operator-stop", reason: "STOP pressed on the live page"}));
  $("ack").addEventListener("click", async () => {
    if (!ended || !sessionId) return command({kind: "acknowledge"});
    try {
      show("cmd-msg", "");
      await api(`/sessions/${sessionId}/alarms/acknowledge`, {reason: "acknowledged on the live page after the session"});
      document.querySelectorAll("#alarms li").forEach((x) => x.classList.add("acked"));
    } catch (e) { show("cmd-msg", e.message); }
  });
  function setSession(id) {
    sessionId = id;
    $("session-id").textContent = id;
    $("session-link").href = "/sessions/" + id;
    $("session-link").hidden = false;
  }
  $("take-control").addEventListener("click", async () => {
    try { status(await api("/live/take-control")); } catch (e) { show("cmd-msg", e.message); }
  });

  function status(s) {
    if (s.state) $("state").textContent = s.state;
    $("controller").textContent = s.controller || "–";
    if (s.session_id) setSession(s.session_id);
    if (s.state) ended = ["completed", "aborted"].includes(s.state);
    const mine = s.controller === me;
    document.querySelectorAll("#controls button:not(#stop)").forEach((b) => { b.disabled = !!s.active && !mine; });
    $("start").disabled = !!s.active;
    if (s.resolved) resolved(s.resolved);
    if (s.alarms) { $("alarms").innerHTML = ""; s.alarms.forEach(alarm); }
    if (s.events) { $("events").innerHTML = ""; s.events.forEach(event); }
  }
  function resolved(r) {
    if ($("max-force").value === "") $("max-force").value = Math.round(r.max_force_n * LB);
    if ($("rest-force").value === "") $("rest-force").value = Math.round(r.rest_force_n * LB);
    if ($("hold").value === "") $("hold").value = r.hold_s;
    if ($("rest").value === "") $("rest").value = r.rest_s;
    if ($("angle-set").value === "") $("angle-set").value = r.angle_deg;
  }
  function alarm(a) {
    const li = document.createElement("li");
    li.className = "alarm-" + a.priority + (a.acknowledged ? " acked" : "");
    li.textContent = `${a.priority.toUpperCase()} t=${a.t.toFixed(1)} s: ${a.condition} — ${a.action}`;
    $("alarms").appendChild(li);
  }
  function event(e) {
    const li = document.createElement("li");
    const change = e.field ? ` (${e.field} ${Number(e.old).toFixed(1)} -> ${Number(e.new).toFixed(1)})` : "";
    li.textContent = `t=${Number(e.t).toFixed(2)} ${e.kind}: ${e.reason}${change}`;
    $("events").prepend(li);
    if (e.kind === "acknowledge") document.querySelectorAll("#alarms li").forEach((x) => x.classList.add("acked"));
  }
  function fmtTime(s) { const m = Math.floor(s / 60); return m + ":" + String(Math.floor(s % 60)).padStart(2, "0"); }
  function readouts(f) {
    const [, , target, force, , , angle, , phase, cycle, state, left] = f;
    $("force-lb").textContent = Math.round(force * LB);
    $("force-n").textContent = Math.round(force) + " N";
    $("target-lb").textContent = Math.round(target * LB);
    $("angle-v").textContent = angle.toFixed(1);
    $("phase").textContent = PHASES[phase] || phase;
    $("cycle").textContent = cycle + 1;
    $("state").textContent = STATES[state] || state;
    $("time-left").textContent = fmtTime(left);
  }

  function draw() {
    const c = $("chart"), ctx = c.getContext("2d"), W = c.width, H = c.height;
    ctx.clearRect(0, 0, W, H);
    if (frames.length) {
      const tEnd = frames[frames.length - 1][1], t0 = tEnd - WINDOW_S;
      let fmax = 50;
      for (const f of frames) fmax = Math.max(fmax, f[2] || 0, f[3] || 0);
      fmax *= 1.15;
      const x = (t) => (t - t0) / WINDOW_S * W, y = (v) => H - v / fmax * (H - 10);
      // Phase bands behind the lines.
      for (let i = 1; i < frames.length; i++) {
        const col = BAND[frames[i][8]];
        if (col) { ctx.fillStyle = col; ctx.fillRect(x(frames[i - 1][1]), 0, x(frames[i][1]) - x(frames[i - 1][1]) + 1, H); }
      }
      ctx.fillStyle = "#667"; ctx.font = "12px sans-serif";
      for (let v = 0; v < fmax; v += 100) { ctx.fillText(Math.round(v * LB) + " lb", 2, y(v) - 2); }
      const line = (col, k, w) => {
        ctx.strokeStyle = col; ctx.lineWidth = w; ctx.beginPath();
        frames.forEach((f, i) => (i ? ctx.lineTo(x(f[1]), y(f[k])) : ctx.moveTo(x(f[1]), y(f[k]))));
        ctx.stroke();
      };
      line("#888", 2, 2); line("#1f5fbf", 3, 2);
      const a = $("chart-angle"), actx = a.getContext("2d");
      actx.clearRect(0, 0, a.width, a.height);
      const ay = (v) => a.height - v / 35 * a.height;
      actx.strokeStyle = "#c77d00"; actx.lineWidth = 2; actx.beginPath();
      frames.forEach((f, i) => (i ? actx.lineTo(x(f[1]), ay(f[6])) : actx.moveTo(x(f[1]), ay(f[6]))));
      actx.stroke();
    }
    requestAnimationFrame(draw);
  }
  requestAnimationFrame(draw);
  setInterval(() => { $("rate").textContent = received; received = 0; }, 1000);

  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/v1/live/ws");
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type === "frame") {
        received++;
        frames.push(msg.f);
        const tEnd = msg.f[1];
        while (frames.length && frames[0][1] < tEnd - WINDOW_S) frames.shift();
        readouts(msg.f);
        window.__lastFrame = msg.f;
      } else if (msg.type === "hello") {
        frames = msg.frames || [];
        status(msg);
      } else if (msg.type === "status") { status(msg);
      } else if (msg.type === "event") { event(msg.data);
      } else if (msg.type === "alarm") { alarm(msg.data);
      } else if (msg.type === "resolved") { resolved(msg.data);
      } else if (msg.type === "session") { setSession(msg.data.id); ended = false;
      } else if (msg.type === "error") { show("setup-msg", msg.data.message);
      } else if (msg.type === "end") { $("state").textContent = msg.data.state; $("start").disabled = false; ended = true; }
    };
    ws.onclose = () => setTimeout(connect, 1000);
  }
  connect();
})();
