// media.js: the player of /media/<chevron>/<stream>, a WHEP client
// (draft-ietf-wish-whep-03) of the gateway's endpoint (gateway/API.md,
// "Media"). It gathers its candidates before the POST (the offer carries
// them), sends any that come later in one aggregated PATCH, deletes its
// session when the page goes away, and says in words what failed: the
// gateway's {error, code} answer, or which addresses ICE could not reach.
// When the direct path's ICE fails it tries the relay once (?path=relay).
// window.rnMedia = {state, error, pc, path, session, note} is for tests;
// state is starting, connecting, retrying, playing, stalled or failed.

const GATHER_WAIT = 2000; // ms of local gathering before the POST
const CONNECT_WAIT = 20000; // ms for ICE and DTLS after the answer
const MAX_RETRIES = 3; // 409/503 with Retry-After
const STALL_AFTER = 6000; // ms without a decoded frame while connected

const parts = location.pathname.split("/").filter(Boolean); // media, chevron, stream
const chev = safeDecode(parts[1] || "");
const stream = safeDecode(parts[2] || "");
const endpoint = `/media/${encodeURIComponent(chev)}/${encodeURIComponent(stream)}/whep`;

const rn = { state: "starting", error: "", note: "", pc: null, path: "", session: "" };
window.rnMedia = rn;

const el = (id) => document.getElementById(id);
const video = el("media-video");

function safeDecode(s) {
  try { return decodeURIComponent(s); } catch (e) { return s; }
}

// setState shows the player's state in the header.
function setState(s, text) {
  rn.state = s;
  const st = el("media-state");
  st.textContent = text || s;
  st.className = "conn " + (s === "playing" ? "live" : s === "failed" ? "down" : "");
  video.classList.toggle("idle", s !== "playing");
  // Nothing to show: no empty black box that could pass for a video.
  video.classList.toggle("hidden", s === "failed");
}

function showError(text) {
  rn.error = text;
  const p = el("media-error");
  p.textContent = text;
  p.classList.toggle("hidden", !text);
}

function showNote(text) {
  rn.note = text;
  const p = el("media-note");
  p.textContent = text;
  p.classList.toggle("hidden", !text);
}

// errorText reads the gateway's {error, code} answer (or says the status).
async function errorText(resp) {
  let msg = `${resp.status} ${resp.statusText || "failed"}`;
  try {
    const body = await resp.json();
    if (body && typeof body.error === "string" && body.error) msg = body.error;
    if (body && typeof body.code === "string" && body.code) msg += ` (${body.code})`;
  } catch (e) { /* not JSON: the status line */ }
  return msg;
}

// gathered resolves when ICE gathering completes, or after ms.
function gathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() { if (pc.iceGatheringState === "complete") done(); }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

const candidateLines = (sdp) => String(sdp || "").split(/\r?\n/).filter((l) => l.startsWith("a=candidate:"));

// sdpValue is the first "a=<key>:value" of an SDP.
function sdpValue(sdp, key) {
  const line = String(sdp || "").split(/\r?\n/).find((l) => l.startsWith(`a=${key}:`));
  return line ? line.slice(key.length + 3) : "";
}

// where lists the answer's candidates as "UDP 10.0.0.5:8341", for the
// message when ICE fails.
function where(sdp) {
  const out = [];
  for (const l of candidateLines(sdp)) {
    const f = l.slice("a=candidate:".length).split(" ");
    if (f.length < 8) continue;
    const s = `${f[2].toUpperCase()} ${f[4].includes(":") ? `[${f[4]}]` : f[4]}:${f[5]}`;
    if (!out.includes(s)) out.push(s);
  }
  return out;
}

let current = null; // { pc, location, etag }

// stop ends the current session (DELETE) and its peer connection.
function stop(keepalive) {
  const c = current;
  current = null;
  if (!c) return;
  if (c.location) {
    fetch(c.location, { method: "DELETE", credentials: "same-origin", keepalive: !!keepalive }).catch(() => {});
  }
  try { c.pc.close(); } catch (e) { /* closed */ }
}

// play makes one attempt on path ("" is the gateway's choice); it returns
// "ok", "ice" (ICE or DTLS failed) or "error" (the gateway said no).
async function play(path, tries = 0) {
  stop(false);
  showError("");
  rn.path = path || "auto";
  rn.session = "";
  setState("connecting", path === "relay" ? "connecting through the relay…" : "connecting…");
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  rn.pc = pc;
  const c = { pc, location: "", etag: "" };
  current = c;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.ontrack = (e) => {
    video.srcObject = e.streams && e.streams[0] ? e.streams[0] : new MediaStream([e.track]);
  };
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await gathered(pc, GATHER_WAIT);
  const sent = pc.localDescription.sdp;
  const url = endpoint + (path ? `?path=${encodeURIComponent(path)}` : "");
  let resp;
  try {
    resp = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/sdp", Accept: "application/sdp" }, body: sent,
    });
  } catch (e) {
    return fail(c, "error", `the gateway cannot be reached: ${e.message}`);
  }
  if (current !== c) return "error";
  if (resp.status !== 201) {
    const text = await errorText(resp);
    const retry = Number(resp.headers.get("Retry-After"));
    if ((resp.status === 409 || resp.status === 503) && retry > 0 && tries < MAX_RETRIES) {
      showError(`${text}: trying again in ${retry} s`);
      setState("retrying", "waiting to try again…");
      await new Promise((r) => setTimeout(r, Math.min(retry, 30) * 1000 * (tries + 1)));
      if (current !== c) return "error";
      return play(path, tries + 1);
    }
    if (resp.status === 401) return fail(c, "error", `${text}. Log in first: run robonet gateway login on a node and open the link it prints.`);
    return fail(c, "error", text);
  }
  c.location = new URL(resp.headers.get("Location") || "", location.href).pathname;
  c.etag = resp.headers.get("ETag") || "";
  const session = c.location.split("/").pop();
  rn.session = session;
  rn.path = session.startsWith("r") ? "relay" : "direct";
  const answer = await resp.text();
  try {
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
  } catch (e) {
    return fail(c, "error", `the gateway's answer cannot be used: ${e.message}`);
  }
  trickleLate(c, sent);
  const outcome = await connected(pc);
  if (current !== c) return "error";
  if (outcome === "ok") {
    setState("playing", `playing (${rn.path})`);
    watchFrames(c);
    // A connection lost later (the node or the gateway went away) says so
    // rather than leaving the last frame up.
    pc.addEventListener("connectionstatechange", () => {
      if (current === c && pc.connectionState === "failed") {
        fail(c, "ice", `the connection to ${rn.path === "relay" ? "the gateway" : `node ${chev}`} was lost: reload to try again`);
      }
    });
    return "ok";
  }
  const reach = where(answer);
  const to = rn.path === "relay" ? "the gateway" : `node ${chev}`;
  const msg = `the browser could not reach ${to} over ${reach.length ? reach.join(" or ") : "any address it offered"}`;
  return fail(c, "ice", msg);
}

// trickleLate sends, in one PATCH, the candidates gathered after the
// offer went (none when gathering finished in time).
async function trickleLate(c, sent) {
  await gathered(c.pc, GATHER_WAIT);
  if (current !== c || !c.location || !c.etag) return;
  const had = new Set(candidateLines(sent));
  const now = c.pc.localDescription ? c.pc.localDescription.sdp : "";
  const late = candidateLines(now).filter((l) => !had.has(l));
  if (late.length === 0) return;
  const frag = [`a=ice-ufrag:${sdpValue(now, "ice-ufrag")}`, `a=ice-pwd:${sdpValue(now, "ice-pwd")}`,
    "m=video 9 UDP/TLS/RTP/SAVPF 0", `a=mid:${sdpValue(now, "mid") || "0"}`, ...late, "a=end-of-candidates", ""].join("\r\n");
  try {
    const resp = await fetch(c.location, {
      method: "PATCH", credentials: "same-origin",
      headers: { "Content-Type": "application/trickle-ice-sdpfrag", "If-Match": c.etag }, body: frag,
    });
    if (resp.status !== 204) console.warn("media: PATCH", resp.status, await errorText(resp));
  } catch (e) { console.warn("media: PATCH", String(e)); }
}

// watchFrames says when frames stop coming while the connection stays up
// (the node, its camera or the relay stopped): a frozen picture is not
// left looking live. It clears the message when frames come back.
function watchFrames(c) {
  let last = -1, since = Date.now();
  const timer = setInterval(async () => {
    if (current !== c) { clearInterval(timer); return; }
    let frames = 0;
    try {
      (await c.pc.getStats()).forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "video") frames = r.framesDecoded || 0;
      });
    } catch (e) { return; }
    if (current !== c) return;
    if (frames !== last) {
      last = frames;
      since = Date.now();
      if (rn.state === "stalled") {
        setState("playing", `playing (${rn.path})`);
        showError("");
      }
      return;
    }
    if (rn.state === "playing" && Date.now() - since >= STALL_AFTER) {
      setState("stalled", "no video");
      showError(`no frames from ${stream} on node ${chev} for ${Math.round((Date.now() - since) / 1000)} s: the node, its camera or the relay stopped (this page keeps waiting)`);
    }
  }, 1000);
}

// connected waits for the peer connection to connect: "ok", or "ice" when
// it failed or took longer than CONNECT_WAIT.
function connected(pc) {
  return new Promise((resolve) => {
    const t = setTimeout(() => finish("ice"), CONNECT_WAIT);
    function finish(v) {
      clearTimeout(t);
      pc.removeEventListener("connectionstatechange", check);
      resolve(v);
    }
    function check() {
      if (pc.connectionState === "connected") finish("ok");
      else if (pc.connectionState === "failed" || pc.connectionState === "closed") finish("ice");
    }
    pc.addEventListener("connectionstatechange", check);
    check();
  });
}

function fail(c, kind, text) {
  if (current === c) stop(false);
  setState("failed", "failed");
  showError(text);
  return kind;
}

async function start() {
  el("media-title").textContent = `${chev} · ${stream}`;
  document.title = `${stream} on ${chev} · robonet`;
  const asked = new URLSearchParams(location.search).get("path") || "";
  if (!/^[0-9]{1,5}(\.[0-9]{1,5}){0,3}$/.test(chev) || !/^[a-z0-9][a-z0-9_-]{0,31}$/.test(stream)) {
    setState("failed", "failed");
    showError(`no stream here: the address is /media/<chevron>/<stream>, as in /media/3.12.7.1/cam0`);
    return;
  }
  const first = await play(asked === "direct" || asked === "relay" ? asked : "");
  if (first === "ice" && rn.path === "direct" && asked !== "direct") {
    const why = rn.error;
    showNote(`${why}: trying the relay through the gateway.`);
    const second = await play("relay");
    if (second === "ok") showNote(`${why}: playing through the gateway's relay instead.`);
  }
}

window.addEventListener("pagehide", () => stop(true));
start().catch((e) => {
  setState("failed", "failed");
  showError(`the player failed: ${e && e.message ? e.message : e}`);
});
