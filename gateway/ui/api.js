// api.js: the dashboard's calls to the gateway's REST API (gateway/API.md).
// Every failure becomes an ApiError carrying the server's stable code and
// its message for people, so views can show "denied: …" as the server said it.

export class ApiError extends Error {
  constructor(status, code, message, readings) {
    super(message);
    this.status = status;
    this.code = code;
    this.readings = Array.isArray(readings) ? readings : []; // ask: code "ambiguous"
  }
  toString() { return this.code ? `${this.code}: ${this.message}` : this.message; }
}

const MAX_LINE = 8 << 20; // a longer NDJSON line is a broken stream, not a result

async function errorFrom(resp) {
  let code = "http_" + resp.status, msg = resp.statusText || "request failed", readings = [];
  try {
    const body = await resp.json();
    if (body && typeof body.error === "string") msg = body.error;
    if (body && typeof body.code === "string") code = body.code;
    if (body && Array.isArray(body.readings)) readings = body.readings;
  } catch (e) { /* not JSON: keep the status line */ }
  return new ApiError(resp.status, code, msg, readings);
}

// getJSON fetches a GET /api/… route.
export async function getJSON(path) {
  let resp;
  try {
    resp = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  } catch (e) {
    throw new ApiError(0, "network", "the gateway cannot be reached: " + e.message);
  }
  if (!resp.ok) throw await errorFrom(resp);
  return resp.json();
}

// postJSON posts body and returns the decoded answer.
export async function postJSON(path, body) {
  let resp;
  try {
    resp = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, "network", "the gateway cannot be reached: " + e.message);
  }
  if (!resp.ok) throw await errorFrom(resp);
  return resp.json();
}

// postStream posts body asking for NDJSON and calls onLine with each decoded
// line as it arrives. It resolves when the stream ends. A line of type
// "error" is thrown as an ApiError after onLine saw it. signal aborts.
export async function postStream(path, body, onLine, signal) {
  let resp;
  try {
    resp = await fetch(path, {
      method: "POST", credentials: "same-origin", signal,
      headers: { "Content-Type": "application/json", Accept: "application/x-ndjson" },
      body: JSON.stringify(body),
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "the gateway cannot be reached: " + e.message);
  }
  if (!resp.ok) throw await errorFrom(resp);
  if (!resp.body) throw new ApiError(0, "stream", "this browser cannot read a streamed answer");
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let failure = null;
  const handle = (line) => {
    if (!line.trim()) return;
    let msg;
    try { msg = JSON.parse(line); } catch (e) {
      throw new ApiError(0, "stream", "the gateway sent a line that is not JSON");
    }
    if (!msg || typeof msg !== "object") return;
    onLine(msg);
    if (msg.type === "error") failure = new ApiError(0, String(msg.code || "error"), String(msg.error || "failed"));
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      handle(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    if (buf.length > MAX_LINE) {
      await reader.cancel();
      throw new ApiError(0, "stream", "a streamed line is too long");
    }
  }
  handle(buf);
  if (failure) throw failure;
}
