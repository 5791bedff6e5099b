// mediatiles.js: the dashboard's media section. GET /api/media lists every
// live node's streams (gateway/API.md, "Media"); each becomes a tile linking
// to its player page, /media/<chevron>/<stream>. The section stays hidden
// while there are none.
import { h, fill } from "./dom.js";

const CHEVRON = /^[0-9]{1,5}(\.[0-9]{1,5}){0,3}$/;
const STREAM = /^[a-z0-9][a-z0-9_-]{0,31}$/;

// validStreams keeps the well-formed entries of an /api/media answer.
export function validStreams(list) {
  if (!Array.isArray(list)) return [];
  return list.filter((s) => s && typeof s === "object" && CHEVRON.test(String(s.chevron)) && STREAM.test(String(s.stream)));
}

// renderMediaTiles fills section (from App.mediaSection) with list's tiles.
export function renderMediaTiles(section, list) {
  if (!section) return;
  styles();
  const items = validStreams(list);
  section.classList.toggle("hidden", items.length === 0);
  const tiles = section.querySelector(".media-tiles");
  if (tiles) fill(tiles, items.map(tile));
}

function tile(s) {
  const href = `/media/${encodeURIComponent(s.chevron)}/${encodeURIComponent(s.stream)}`;
  const size = s.width && s.height ? `${s.width}×${s.height}${s.fps ? "@" + s.fps : ""}` : "";
  const n = Number(s.viewers) || 0;
  const facts = [s.kind, size, s.live ? "live" : "idle", `${n} viewer${n === 1 ? "" : "s"}`].filter(Boolean).join(" · ");
  return h("a", { class: "media-tile", href, "data-stream": `${s.chevron}/${s.stream}` },
    h("b", { text: s.stream }), h("span", { text: ` on ${s.chevron}` }),
    h("span", { class: "hint media-facts", text: facts }),
    s.error ? h("span", { class: "media-fault", text: String(s.error) }) : null);
}

// styles links media.css once (the tiles' look lives beside the player's).
function styles() {
  if (document.querySelector('link[href="/media.css"]')) return;
  document.head.append(h("link", { rel: "stylesheet", href: "/media.css" }));
}
