// live.js: the dashboard's one WebSocket (/api/live). It reconnects with a
// growing delay, re-sends the watches it holds, and hands every message to
// the handlers registered with on(type, fn).

const MAX_DELAY = 10000;

export class Live {
  constructor({ onState } = {}) {
    this.handlers = new Map();
    this.watched = new Set();
    this.onState = onState || (() => {});
    this.delay = 500;
    this.ws = null;
    this.stopped = false;
  }

  on(type, fn) { this.handlers.set(type, fn); }

  start() {
    if (this.stopped) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/api/live`);
    this.ws = ws;
    this.onState("connecting");
    ws.addEventListener("open", () => {
      this.delay = 500;
      this.onState("live");
      for (const c of this.watched) this.send({ type: "watch", chevron: c });
    });
    ws.addEventListener("message", (ev) => {
      if (typeof ev.data !== "string") return;
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (!msg || typeof msg.type !== "string") return;
      const fn = this.handlers.get(msg.type);
      if (fn) fn(msg);
    });
    ws.addEventListener("close", (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (ev.code === 4001) {
        this.stopped = true;
        this.onState("unauthenticated");
        return;
      }
      if (this.stopped) return;
      this.onState("down");
      setTimeout(() => this.start(), this.delay);
      this.delay = Math.min(MAX_DELAY, this.delay * 2);
    });
  }

  // stop closes the socket for good (the session is over).
  stop() {
    this.stopped = true;
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  watch(chevron) {
    if (this.watched.has(chevron)) return;
    this.watched.add(chevron);
    this.send({ type: "watch", chevron });
  }

  unwatch(chevron) {
    if (!this.watched.delete(chevron)) return;
    this.send({ type: "unwatch", chevron });
  }
}
