// Hearth's web viewer: draws the world's Tiled map with its real tiles and
// the agents and player characters on it, live over the WebSocket protocol
// v1 (docs/protocol.md), with a side panel on the agent clicked. Reads the
// world's name from `?world=` (default "valley"). It is an ordinary game
// client: everything it shows comes from `/ws` and from `/maps/…`.
//
// Parts, in order: settings; the connection (hello, subscribe, requests and
// their answers); the world model (snapshot, delta, events); the Tiled map
// loader; drawing (map, markers, names, bubbles) with pan and zoom; the side
// panel; the login form; the test hook (`window.hearthViewer`).

// --- settings ---------------------------------------------------------------

const SUBPROTOCOL = "hearth.v1.json";
const WORLD = new URLSearchParams(location.search).get("world") || "valley";
/** How long a line said in a `speech` event stays over the speaker. */
const SPEECH_MS = 5000;
/** Lines kept in the event feed. */
const FEED_LINES = 6;
/** How often an open panel asks again for the agent's detail. */
const PANEL_REFRESH_MS = 10000;
/** Reconnection waits: doubles from the first to the last. */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 10000;
/** Memories shown to designers and admins. */
const MEMORIES_K = 10;
/** Where the token from `POST /auth/login` is kept between page loads. */
const TOKEN_KEY = `hearth.token.${WORLD}`;
/** The largest area a subscription may name (protocol limit). */
const MAX_AREA = 4096;
/** The map is pre-drawn into one image of at most this many pixels (browsers cap canvas sizes). */
const MAP_MAX_SIDE = 8192;
const MAP_MAX_PIXELS = 48e6;
/** With more entities than this in view, names are drawn only for the selected one. */
const NAMES_UP_TO = 400;

// Tiled keeps flips in a tile id's top bits (the fourth is hexagonal
// rotation, never set on the orthogonal maps Hearth reads).
const FLIP_H = 0x80000000;
const FLIP_V = 0x40000000;
const FLIP_D = 0x20000000;
const GID_MASK = 0x0fffffff;

const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const TRAITS = ["openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism"];

const $ = (id) => document.getElementById(id);
const canvas = $("view");
const ctx = canvas.getContext("2d");

/** Everything the page knows; changed only by the functions below. */
const state = {
  ws: null,
  /** The `welcome` of the current connection, or null. */
  welcome: null,
  nextId: 1,
  /** Request id → what it asked: {what: "hello"|"subscribe"|"detail"|"memories", agent?}. */
  pending: new Map(),
  retryMs: RETRY_FIRST_MS,
  retryTimer: null,
  /** True once a snapshot has been applied on this connection. */
  ready: false,
  tick: null,
  gameTime: null,
  /** The loaded map: {url, width, height, tileW, tileH, image, locations} or null. */
  map: null,
  mapError: null,
  /** Entity id → {id, kind, name, facing, activity, location, mood, speech, from, to, t0, dur, seenAt}. */
  entities: new Map(),
  /** Entity id → {text, until}: lines from `speech` events. */
  bubbles: new Map(),
  /** The agent or character whose panel is open. */
  selected: null,
  /** The last agent_detail answer for the selected agent. */
  detail: null,
  memories: null,
  panelError: null,
  panelTimer: null,
  /** The token when the browser refuses storage. */
  memoryToken: null,
  statusTimer: null,
  /** The view: map pixel (px, py) is drawn at (ox + px·scale, oy + py·scale) CSS pixels. */
  view: { scale: 1, ox: 0, oy: 0, fitted: true },
};

// --- the connection ---------------------------------------------------------

function token() {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function setToken(value) {
  try {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage refused (private mode): the token lives only in this page
  }
  state.memoryToken = value || null;
}

/** Opens the WebSocket and says hello; reconnects on its own when it closes. */
function connect() {
  clearTimeout(state.retryTimer);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`, SUBPROTOCOL);
  state.ws = ws;
  state.nextId = 1;
  state.pending.clear();
  setStatus("connecting", "connecting…");

  ws.onopen = () => {
    const hello = { type: "hello", world: WORLD };
    const t = token() || state.memoryToken;
    if (t) hello.token = t;
    send(hello, { what: "hello" });
  };
  ws.onmessage = (e) => {
    let msg;
    try {
      msg = JSON.parse(e.data);
    } catch {
      return; // the server only sends JSON; ignore anything else
    }
    receive(msg);
  };
  ws.onclose = (e) => {
    if (state.ws !== ws) return; // replaced on purpose (login, logout)
    state.ws = null;
    state.welcome = null;
    state.ready = false;
    const why = e.reason ? `: ${e.reason}` : e.code && e.code !== 1006 ? ` (${e.code})` : "";
    const wait = state.retryMs;
    state.retryMs = Math.min(state.retryMs * 2, RETRY_MAX_MS);
    setStatus("down", `disconnected${why}; retrying in ${Math.round(wait / 1000)} s`);
    state.retryTimer = setTimeout(connect, wait);
  };
}

/** Closes the connection on purpose and opens a new one (after login or logout). */
function reconnect() {
  const old = state.ws;
  state.ws = null;
  if (old) old.close(1000, "reconnecting");
  state.retryMs = RETRY_FIRST_MS;
  connect();
}

/** Sends a request with the next id; remembers what it asked. */
function send(msg, what) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return null;
  const id = state.nextId++;
  state.pending.set(id, what);
  ws.send(JSON.stringify({ ...msg, id }));
  return id;
}

function receive(msg) {
  const asked = msg.id !== undefined ? state.pending.get(msg.id) : undefined;
  if (asked) state.pending.delete(msg.id);
  switch (msg.type) {
    case "welcome":
      onWelcome(msg);
      break;
    case "snapshot":
      onSnapshot(msg);
      break;
    case "delta":
      onDelta(msg);
      break;
    case "event":
      onEvent(msg.event || {});
      break;
    case "agent_detail":
      if (msg.agent && msg.agent.id === state.selected) {
        state.detail = msg.agent;
        state.panelError = null;
        renderPanel();
      }
      break;
    case "agent_memories":
      if (asked && asked.agent === state.selected) {
        state.memories = msg.memories || [];
        renderPanel();
      }
      break;
    case "error":
      onError(msg, asked);
      break;
    default:
      break; // `ok` and answers this page never asks for
  }
}

async function onWelcome(msg) {
  state.welcome = msg;
  state.retryMs = RETRY_FIRST_MS;
  state.gameTime = msg.game_time;
  $("world").textContent = msg.world;
  $("role").textContent = msg.character ? `${msg.role} · ${msg.character}` : msg.role;
  setStatus("connecting", "loading the map…");
  renderHeader();
  if (!msg.map) {
    // a generated world has no map: markers on a plain ground
    state.map = null;
    state.mapError = "the world has none";
    fitView();
  } else if (!state.map || state.map.url !== msg.map) {
    try {
      state.map = await loadMap(msg.map);
      state.mapError = null;
      fitView();
    } catch (e) {
      state.map = null;
      state.mapError = String(e.message || e);
    }
  }
  if (state.welcome !== msg) return; // the connection changed meanwhile
  const area = state.map
    ? { x: 0, y: 0, w: Math.min(state.map.width, MAX_AREA), h: Math.min(state.map.height, MAX_AREA) }
    : { x: 0, y: 0, w: MAX_AREA, h: MAX_AREA };
  send({ type: "subscribe", area }, { what: "subscribe" });
  setStatus("live", liveText());
  if (state.selected) requestPanel();
}

function onError(msg, asked) {
  const text = `${msg.code}: ${msg.message}`;
  if (asked && (asked.what === "detail" || asked.what === "memories")) {
    if (asked.agent === state.selected) {
      state.panelError = text;
      renderPanel();
    }
    return;
  }
  if (asked && asked.what === "hello" && msg.code === "unauthorized" && (token() || state.memoryToken)) {
    // an expired or revoked token: forget it and watch anonymously
    setToken(null);
    renderLogin();
    setStatus("down", `${text}; continuing as a spectator`);
    reconnect();
    return;
  }
  if (!state.welcome) {
    setStatus("down", text);
    return;
  }
  // on a live connection: say it for a few seconds, then go back to "live"
  setStatus("live", `${liveText()} — ${text}`);
  clearTimeout(state.statusTimer);
  state.statusTimer = setTimeout(() => {
    if (state.welcome) setStatus("live", liveText());
  }, SPEECH_MS);
}

/** The status line of a live connection. */
function liveText() {
  return state.mapError ? `live (no map: ${state.mapError})` : "live";
}

function setStatus(kind, text) {
  const el = $("status");
  el.className = `status ${kind}`;
  el.textContent = text;
}

// --- the world model ----------------------------------------------------------

/** Milliseconds between ticks, as the server said. */
function tickMs() {
  const rate = state.welcome?.tick_rate || 10;
  return 1000 / rate;
}

/** Where an entity is drawn now: between its last two positions. */
function positionOf(e, now) {
  const t = e.dur > 0 ? Math.min(1, (now - e.t0) / e.dur) : 1;
  return { x: e.from.x + (e.to.x - e.from.x) * t, y: e.from.y + (e.to.y - e.from.y) * t };
}

/** Moves an entity to (x, y), gliding over about the time its updates take to arrive. */
function moveTo(e, x, y, now) {
  if (x === e.to.x && y === e.to.y) return;
  e.from = positionOf(e, now);
  e.to = { x, y };
  e.t0 = now;
  // far entities may be updated every second tick only: glide over the gap seen
  e.dur = Math.min(Math.max(now - e.seenAt, tickMs()), 3 * tickMs());
  e.seenAt = now;
}

/** Adds an entity from its full state, or updates the one already known. */
function upsert(full, now) {
  const known = state.entities.get(full.id);
  if (known) {
    merge(known, full, now);
    return;
  }
  const at = { x: full.x ?? 0, y: full.y ?? 0 };
  const e = { ...full, from: at, to: at, t0: now, dur: 0, seenAt: now };
  delete e.x;
  delete e.y;
  state.entities.set(full.id, e);
}

/** Applies the fields present in a `changed` entry (absent: unchanged). */
function merge(e, change, now) {
  for (const [key, value] of Object.entries(change)) {
    if (key !== "id" && key !== "x" && key !== "y") e[key] = value;
  }
  if ("x" in change || "y" in change) moveTo(e, change.x ?? e.to.x, change.y ?? e.to.y, now);
}

function onSnapshot(msg) {
  const now = performance.now();
  const present = new Set();
  for (const full of msg.entities || []) {
    upsert(full, now);
    present.add(full.id);
  }
  for (const id of state.entities.keys()) {
    if (!present.has(id)) state.entities.delete(id);
  }
  state.tick = msg.tick;
  state.gameTime = msg.game_time;
  state.ready = true;
  if (!state.map && state.view.fitted) fitView();
  renderHeader();
  if (state.selected) renderPanel();
}

function onDelta(msg) {
  const now = performance.now();
  for (const change of msg.changed || []) {
    const e = state.entities.get(change.id);
    if (e) merge(e, change, now);
  }
  for (const full of msg.entered || []) upsert(full, now);
  for (const id of msg.left || []) {
    state.entities.delete(id);
    state.bubbles.delete(id);
  }
  state.tick = msg.tick;
  state.gameTime = msg.game_time;
  renderHeader();
  if (state.selected && (msg.left || []).includes(state.selected)) renderPanel();
}

/** An entity's name if it is in sight, else its id without the `a:`/`c:` prefix. */
function nameOf(id) {
  const seen = state.entities.get(id);
  if (seen?.name) return seen.name;
  if (state.detail?.id === id) return state.detail.name;
  return String(id).slice(2);
}

function onEvent(ev) {
  switch (ev.kind) {
    case "speech": {
      state.bubbles.set(ev.speaker, { text: ev.text, until: performance.now() + SPEECH_MS });
      const to = (ev.to || []).map(nameOf).join(", ");
      feed(`${nameOf(ev.speaker)}${to ? ` → ${to}` : ""}: “${ev.text}”`);
      break;
    }
    case "conversation_started":
      feed(`${(ev.participants || []).map(nameOf).join(" and ")} started talking${ev.location ? ` at ${ev.location}` : ""}`);
      break;
    case "conversation_ended":
      feed(`${(ev.participants || []).map(nameOf).join(" and ")} stopped talking`);
      break;
    case "reflection":
      feed(`${nameOf(ev.agent)} thought: ${ev.text}`);
      if (ev.agent === state.selected) requestPanel();
      break;
    case "plan":
      feed(`${nameOf(ev.agent)} now plans to ${ev.goal}`);
      if (ev.agent === state.selected) requestPanel();
      break;
    case "relationship":
      if (ev.agent === state.selected) requestPanel();
      break;
    default:
      break;
  }
}

/** Adds a line to the event feed, dropping the oldest. */
function feed(text) {
  const list = $("feed");
  const li = document.createElement("li");
  li.textContent = text;
  li.title = text;
  list.append(li);
  while (list.children.length > FEED_LINES) list.firstElementChild.remove();
}

/** "Day 1 · Mon 06:32" from "2001-01-01T06:32:06" (day 0 of the calendar is a Monday). */
function clockText(gameTime) {
  const m = /^(\d+)-(\d+)-(\d+)T(\d+):(\d+)/.exec(gameTime || "");
  if (!m) return "–";
  const days = Math.round((Date.UTC(+m[1], +m[2] - 1, +m[3]) - Date.UTC(2001, 0, 1)) / 86400000);
  return `Day ${days + 1} · ${WEEKDAYS[((days % 7) + 7) % 7]} ${m[4]}:${m[5]}`;
}

function renderHeader() {
  $("clock").textContent = clockText(state.gameTime);
  $("tick").textContent = state.tick == null ? "tick –" : `tick ${state.tick}`;
}

// --- the Tiled map ------------------------------------------------------------

async function fetchJson(url) {
  const res = await fetch(url, { cache: "no-cache" });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`${url}: cannot load the image`));
    img.src = url;
  });
}

/** A tileset, external (`source`, relative to the map) or embedded, with its images loaded. */
async function loadTileset(ref, mapUrl) {
  let ts = ref;
  let base = mapUrl;
  if (ref.source) {
    base = new URL(ref.source, mapUrl);
    ts = await fetchJson(base);
  }
  const set = {
    firstgid: ref.firstgid,
    tileW: ts.tilewidth,
    tileH: ts.tileheight,
    columns: ts.columns || 0,
    margin: ts.margin || 0,
    spacing: ts.spacing || 0,
    offsetX: ts.tileoffset?.x || 0,
    offsetY: ts.tileoffset?.y || 0,
    image: null,
    /** Image-collection tilesets: one image per tile id. */
    tileImages: new Map(),
  };
  if (ts.image) {
    set.image = await loadImage(new URL(ts.image, base));
    if (!set.columns) {
      set.columns = Math.max(1, Math.floor((set.image.width - 2 * set.margin + set.spacing) / (set.tileW + set.spacing)));
    }
  } else {
    for (const tile of ts.tiles || []) {
      if (tile.image) set.tileImages.set(tile.id, await loadImage(new URL(tile.image, base)));
    }
  }
  return set;
}

/** A tile layer's global tile ids: a plain array, or base64 (uncompressed, zlib or gzip). */
async function layerGids(layer) {
  if (Array.isArray(layer.data)) return layer.data;
  if (layer.encoding !== "base64" || typeof layer.data !== "string") return [];
  let bytes = Uint8Array.from(atob(layer.data.trim()), (c) => c.charCodeAt(0));
  if (layer.compression === "zlib" || layer.compression === "gzip") {
    const format = layer.compression === "zlib" ? "deflate" : "gzip";
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream(format));
    bytes = new Uint8Array(await new Response(stream).arrayBuffer());
  } else if (layer.compression) {
    throw new Error(`layer "${layer.name}": ${layer.compression} compression is not supported`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const gids = new Array(bytes.byteLength >> 2);
  for (let i = 0; i < gids.length; i++) gids[i] = view.getUint32(i * 4, true);
  return gids;
}

/** Draws one tile (flips honoured) with its bottom-left corner at the cell's. */
function drawTile(g, sets, gid, cellX, cellY, map) {
  const id = gid & GID_MASK;
  if (id === 0) return;
  let set = null;
  for (const s of sets) if (s.firstgid <= id) set = s; // sorted by firstgid
  if (!set) return;
  const local = id - set.firstgid;
  let img = set.image;
  let sx = 0;
  let sy = 0;
  let w = set.tileW;
  let h = set.tileH;
  if (img) {
    sx = set.margin + (local % set.columns) * (set.tileW + set.spacing);
    sy = set.margin + Math.floor(local / set.columns) * (set.tileH + set.spacing);
  } else {
    img = set.tileImages.get(local);
    if (!img) return;
    w = img.width;
    h = img.height;
  }
  const dx = cellX * map.tileW + set.offsetX;
  const dy = (cellY + 1) * map.tileH - h + set.offsetY;
  const flipH = (gid & FLIP_H) !== 0;
  const flipV = (gid & FLIP_V) !== 0;
  const flipD = (gid & FLIP_D) !== 0;
  if (!flipH && !flipV && !flipD) {
    g.drawImage(img, sx, sy, w, h, dx, dy, w, h);
    return;
  }
  // Tiled flips diagonally first, then horizontally and vertically; a canvas
  // applies the transform set last first.
  g.save();
  g.translate(dx + w / 2, dy + h / 2);
  g.scale(flipH ? -1 : 1, flipV ? -1 : 1);
  if (flipD) g.transform(0, 1, 1, 0, 0, 0);
  g.drawImage(img, sx, sy, w, h, -w / 2, -h / 2, w, h);
  g.restore();
}

/** Draws the visible tile layers (inside groups too) in order; collects named locations. */
async function drawLayers(g, layers, sets, map, offX, offY, opacity) {
  for (const layer of layers || []) {
    if (layer.visible === false) continue;
    const ox = offX + (layer.offsetx || 0);
    const oy = offY + (layer.offsety || 0);
    const alpha = opacity * (layer.opacity ?? 1);
    if (layer.type === "group") {
      await drawLayers(g, layer.layers, sets, map, ox, oy, alpha);
    } else if (layer.type === "tilelayer") {
      const gids = await layerGids(layer);
      const width = layer.width || map.width;
      g.save();
      g.globalAlpha = alpha;
      g.translate(ox + (layer.x || 0) * map.tileW, oy + (layer.y || 0) * map.tileH);
      for (let i = 0; i < gids.length; i++) {
        if (gids[i]) drawTile(g, sets, gids[i], i % width, Math.floor(i / width), map);
      }
      g.restore();
    } else if (layer.type === "objectgroup") {
      for (const o of layer.objects || []) {
        const kind = o.type || o.class;
        if (kind === "location" && o.name && o.width > 0 && o.height > 0) {
          map.locations.push({ name: o.name, x: o.x + ox, y: o.y + oy, w: o.width, h: o.height });
        }
      }
    }
  }
}

/** Fetches a Tiled JSON map and its tilesets and renders its tiles once into an image. */
async function loadMap(url) {
  const mapUrl = new URL(url, location.href);
  const tmj = await fetchJson(mapUrl);
  if (tmj.orientation && tmj.orientation !== "orthogonal") {
    throw new Error(`${url}: ${tmj.orientation} maps are not drawn`);
  }
  const sets = await Promise.all((tmj.tilesets || []).map((ref) => loadTileset(ref, mapUrl)));
  sets.sort((a, b) => a.firstgid - b.firstgid);
  const map = {
    url,
    width: tmj.width,
    height: tmj.height,
    tileW: tmj.tilewidth,
    tileH: tmj.tileheight,
    background: tmj.backgroundcolor || null,
    locations: [],
    image: document.createElement("canvas"),
  };
  // a very large map is pre-drawn at a lower resolution
  const w = map.width * map.tileW;
  const h = map.height * map.tileH;
  map.resolution = Math.min(1, MAP_MAX_SIDE / w, MAP_MAX_SIDE / h, Math.sqrt(MAP_MAX_PIXELS / (w * h)));
  map.image.width = Math.max(1, Math.floor(w * map.resolution));
  map.image.height = Math.max(1, Math.floor(h * map.resolution));
  const g = map.image.getContext("2d");
  g.imageSmoothingEnabled = false;
  g.scale(map.resolution, map.resolution);
  if (map.background) {
    g.fillStyle = map.background;
    g.fillRect(0, 0, map.image.width, map.image.height);
  }
  await drawLayers(g, tmj.layers, sets, map, 0, 0, 1);
  return map;
}

// --- drawing ------------------------------------------------------------------

/** Tile size in map pixels (16 when there is no map). */
function tileSize() {
  return state.map ? { w: state.map.tileW, h: state.map.tileH } : { w: 16, h: 16 };
}

/** The world's extent in map pixels: the map, else the entities' bounds. */
function worldBounds() {
  const t = tileSize();
  if (state.map) return { x: 0, y: 0, w: state.map.width * state.map.tileW, h: state.map.height * state.map.tileH };
  let minX = 0;
  let minY = 0;
  let maxX = 16;
  let maxY = 12;
  for (const e of state.entities.values()) {
    minX = Math.min(minX, e.to.x - 2);
    minY = Math.min(minY, e.to.y - 2);
    maxX = Math.max(maxX, e.to.x + 3);
    maxY = Math.max(maxY, e.to.y + 3);
  }
  return { x: minX * t.w, y: minY * t.h, w: (maxX - minX) * t.w, h: (maxY - minY) * t.h };
}

/** Fits the whole world in the canvas, centred, left of the side panel when it is open and leaves room. */
function fitView() {
  const b = worldBounds();
  let cw = canvas.clientWidth;
  const ch = canvas.clientHeight;
  const panel = $("panel");
  if (!panel.hidden && cw - panel.offsetWidth >= cw / 2) cw -= panel.offsetWidth;
  if (!cw || !ch || !b.w || !b.h) return;
  const scale = Math.min(cw / b.w, ch / b.h);
  state.view = { scale, ox: (cw - b.w * scale) / 2 - b.x * scale, oy: (ch - b.h * scale) / 2 - b.y * scale, fitted: true };
}

/** An entity's marker centre in canvas CSS pixels (positions are tiles; a tile's centre is +0.5). */
function screenOf(e, now) {
  const p = positionOf(e, now);
  const t = tileSize();
  const v = state.view;
  return { x: v.ox + (p.x + 0.5) * t.w * v.scale, y: v.oy + (p.y + 0.5) * t.h * v.scale };
}

/** Marker radius in CSS pixels at the current zoom. */
function markerRadius() {
  return Math.min(14, Math.max(5, tileSize().w * state.view.scale * 0.42));
}

/** A stable colour per agent, from its id. */
function colourOf(id) {
  let h = 0;
  for (const c of id) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360} 65% 55%)`;
}

const FACING = { n: [0, -1], ne: [0.7, -0.7], e: [1, 0], se: [0.7, 0.7], s: [0, 1], sw: [-0.7, 0.7], w: [-1, 0], nw: [-0.7, -0.7] };

function drawMarker(e, p, r) {
  const character = e.kind === "character" || String(e.id).startsWith("c:");
  ctx.beginPath();
  if (character) {
    // players' characters: a diamond
    ctx.moveTo(p.x, p.y - r * 1.2);
    ctx.lineTo(p.x + r * 1.2, p.y);
    ctx.lineTo(p.x, p.y + r * 1.2);
    ctx.lineTo(p.x - r * 1.2, p.y);
    ctx.closePath();
    ctx.fillStyle = "#f4f4f4";
    ctx.strokeStyle = "#2f6fd6";
  } else {
    ctx.arc(p.x, p.y, r, 0, Math.PI * 2);
    ctx.fillStyle = colourOf(e.id);
    ctx.strokeStyle = "#15171c";
  }
  ctx.lineWidth = 2;
  ctx.fill();
  ctx.stroke();
  const dir = FACING[e.facing];
  if (dir) {
    // a notch on the side it faces
    ctx.beginPath();
    ctx.arc(p.x + dir[0] * r * 0.55, p.y + dir[1] * r * 0.55, Math.max(1.5, r * 0.25), 0, Math.PI * 2);
    ctx.fillStyle = "#15171c";
    ctx.fill();
  }
  if (e.id === state.selected) {
    ctx.beginPath();
    ctx.arc(p.x, p.y, r + 5, 0, Math.PI * 2);
    ctx.strokeStyle = "#f2c14e";
    ctx.lineWidth = 3;
    ctx.stroke();
  }
}

/** Text with a dark outline, readable on any tile. */
function outlinedText(text, x, y, fill) {
  ctx.strokeStyle = "rgba(10, 12, 16, 0.85)";
  ctx.lineWidth = 3;
  ctx.lineJoin = "round";
  ctx.strokeText(text, x, y);
  ctx.fillStyle = fill;
  ctx.fillText(text, x, y);
}

/** Splits text into at most `maxLines` lines of at most `width` pixels. */
function wrap(text, width, maxLines) {
  const words = String(text).split(/\s+/).filter(Boolean);
  const lines = [];
  let line = "";
  for (const word of words) {
    const next = line ? `${line} ${word}` : word;
    if (line && ctx.measureText(next).width > width) {
      lines.push(line);
      line = word;
      if (lines.length === maxLines) break;
    } else {
      line = next;
    }
  }
  if (lines.length < maxLines && line) lines.push(line);
  else if (line && lines.length === maxLines) lines[maxLines - 1] = `${lines[maxLines - 1]}…`;
  return lines;
}

function drawBubble(text, p, r) {
  ctx.font = "12px system-ui, sans-serif";
  const lines = wrap(text, 180, 3);
  const lineH = 15;
  const w = Math.max(...lines.map((l) => ctx.measureText(l).width)) + 14;
  const h = lines.length * lineH + 8;
  const x = Math.round(p.x - w / 2);
  const y = Math.round(p.y - r - 10 - h);
  ctx.beginPath();
  ctx.roundRect(x, y, w, h, 6);
  ctx.moveTo(p.x - 5, y + h);
  ctx.lineTo(p.x, y + h + 7);
  ctx.lineTo(p.x + 5, y + h);
  ctx.fillStyle = "rgba(255, 255, 250, 0.95)";
  ctx.strokeStyle = "#15171c";
  ctx.lineWidth = 1;
  ctx.fill();
  ctx.stroke();
  ctx.fillStyle = "#15171c";
  ctx.textAlign = "left";
  ctx.textBaseline = "top";
  lines.forEach((l, i) => ctx.fillText(l, x + 7, y + 5 + i * lineH));
}

/** Matches the canvas's backing store to its CSS size and the device's pixel ratio. */
function resizeCanvas() {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.round(canvas.clientWidth * dpr);
  const h = Math.round(canvas.clientHeight * dpr);
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
    if (state.view.fitted) fitView();
  }
  return dpr;
}

function frame() {
  const now = performance.now();
  const dpr = resizeCanvas();
  const v = state.view;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#1b1e24";
  ctx.fillRect(0, 0, canvas.clientWidth, canvas.clientHeight);

  // the map's tiles, crisp at any zoom; without a map, a plain ground
  if (!state.map) {
    const b = worldBounds();
    ctx.fillStyle = "#2d3a2c";
    ctx.fillRect(v.ox + b.x * v.scale, v.oy + b.y * v.scale, b.w * v.scale, b.h * v.scale);
  } else {
    ctx.imageSmoothingEnabled = false;
    const b = worldBounds();
    ctx.drawImage(state.map.image, v.ox, v.oy, b.w * v.scale, b.h * v.scale);
    ctx.font = "italic 11px system-ui, sans-serif";
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    for (const loc of state.map.locations) {
      if (loc.w * v.scale < 48) continue;
      outlinedText(loc.name, v.ox + loc.x * v.scale + 3, v.oy + loc.y * v.scale + 2, "rgba(255, 255, 255, 0.8)");
    }
  }

  // markers and names of the entities in view, southern ones in front
  const r = markerRadius();
  const cw = canvas.clientWidth;
  const ch = canvas.clientHeight;
  const drawn = [];
  for (const e of state.entities.values()) {
    const p = screenOf(e, now);
    if (p.x > -60 && p.y > -60 && p.x < cw + 60 && p.y < ch + 60) drawn.push({ e, p });
  }
  drawn.sort((a, b) => a.p.y - b.p.y);
  for (const { e, p } of drawn) drawMarker(e, p, r);
  ctx.font = "600 12px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const names = drawn.length <= NAMES_UP_TO;
  for (const { e, p } of drawn) {
    if (names || e.id === state.selected) {
      outlinedText(e.name || e.id, p.x, p.y + r + 3, e.id === state.selected ? "#f2c14e" : "#ffffff");
    }
  }

  // speech over everything: a recent `speech` event, else the entity's current line
  for (const { e, p } of drawn) {
    const said = state.bubbles.get(e.id);
    let text = null;
    if (said && said.until > now) text = said.text;
    else {
      if (said) state.bubbles.delete(e.id);
      text = e.speech;
    }
    if (text) drawBubble(text, p, r);
  }
  requestAnimationFrame(frame);
}

// --- pan, zoom, click ---------------------------------------------------------

/** The entity under a canvas point (CSS pixels), if any. */
function entityAt(x, y) {
  const now = performance.now();
  const reach = Math.max(12, markerRadius() + 6);
  let best = null;
  let bestD = reach;
  for (const e of state.entities.values()) {
    const p = screenOf(e, now);
    const d = Math.hypot(p.x - x, p.y - y);
    if (d <= bestD) {
      best = e;
      bestD = d;
    }
  }
  return best;
}

let drag = null;

canvas.addEventListener("pointerdown", (ev) => {
  drag = { x: ev.clientX, y: ev.clientY, ox: state.view.ox, oy: state.view.oy, moved: false, pointer: ev.pointerId };
  canvas.setPointerCapture?.(ev.pointerId);
});

canvas.addEventListener("pointermove", (ev) => {
  if (!drag || drag.pointer !== ev.pointerId) return;
  const dx = ev.clientX - drag.x;
  const dy = ev.clientY - drag.y;
  if (!drag.moved && Math.hypot(dx, dy) < 5) return;
  drag.moved = true;
  canvas.classList.add("dragging");
  state.view.ox = drag.ox + dx;
  state.view.oy = drag.oy + dy;
  state.view.fitted = false;
});

canvas.addEventListener("pointerup", (ev) => {
  if (!drag || drag.pointer !== ev.pointerId) return;
  const wasDrag = drag.moved;
  drag = null;
  canvas.classList.remove("dragging");
  if (wasDrag) return;
  const rect = canvas.getBoundingClientRect();
  const hit = entityAt(ev.clientX - rect.left, ev.clientY - rect.top);
  if (hit) select(hit.id);
});

canvas.addEventListener("pointercancel", () => {
  drag = null;
  canvas.classList.remove("dragging");
});

canvas.addEventListener(
  "wheel",
  (ev) => {
    ev.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const x = ev.clientX - rect.left;
    const y = ev.clientY - rect.top;
    const v = state.view;
    const factor = Math.pow(1.0015, -ev.deltaY);
    const fit = Math.min(canvas.clientWidth / worldBounds().w, canvas.clientHeight / worldBounds().h);
    const scale = Math.min(Math.max(v.scale * factor, fit / 4), fit * 16);
    // keep the point under the cursor where it is
    v.ox = x - ((x - v.ox) * scale) / v.scale;
    v.oy = y - ((y - v.oy) * scale) / v.scale;
    v.scale = scale;
    v.fitted = false;
  },
  { passive: false },
);

canvas.addEventListener("dblclick", () => fitView());

// --- the side panel -----------------------------------------------------------

/** A DOM element with attributes and children (strings become text, never HTML). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

const fixed = (n, digits = 2) => (typeof n === "number" ? n.toFixed(digits) : "–");

function canSeeMemories() {
  const role = state.welcome?.role;
  return role === "designer" || role === "admin";
}

function select(id) {
  if (state.selected !== id) {
    state.detail = null;
    state.memories = null;
    state.panelError = null;
  }
  state.selected = id;
  $("panel").hidden = false;
  if (state.view.fitted) fitView();
  requestPanel();
  renderPanel();
  clearInterval(state.panelTimer);
  state.panelTimer = setInterval(requestPanel, PANEL_REFRESH_MS);
}

function closePanel() {
  state.selected = null;
  state.detail = null;
  state.memories = null;
  state.panelError = null;
  clearInterval(state.panelTimer);
  $("panel").hidden = true;
  if (state.view.fitted) fitView();
}

/** Asks for the selected agent's detail (and memories, for designers and admins). */
function requestPanel() {
  const id = state.selected;
  if (!id || !String(id).startsWith("a:") || !state.welcome) return;
  send({ type: "agent_detail", agent: id }, { what: "detail", agent: id });
  if (canSeeMemories()) {
    send({ type: "agent_memories", agent: id, query: "", k: MEMORIES_K }, { what: "memories", agent: id });
  }
}

/** The schedule slot under way at the game time ("HH:MM" strings; slots may wrap midnight). */
function isCurrentSlot(slot) {
  const now = /T(\d\d:\d\d)/.exec(state.gameTime || "")?.[1];
  if (!now) return false;
  return slot.start <= slot.end ? now >= slot.start && now < slot.end : now >= slot.start || now < slot.end;
}

function renderPanel() {
  const body = $("panel-body");
  const id = state.selected;
  if (!id) return;
  const live = state.entities.get(id);
  const d = state.detail && state.detail.id === id ? state.detail : null;
  const parts = [];

  parts.push(el("h2", {}, d?.name || live?.name || id));
  if (d) parts.push(el("p", { class: "sub" }, `${d.occupation}, ${d.age}`));
  else if (String(id).startsWith("c:")) parts.push(el("p", { class: "sub" }, "a player's character"));
  if (!live) parts.push(el("p", { class: "note" }, "out of sight"));

  if (state.panelError) parts.push(el("div", { class: "error", role: "alert" }, state.panelError));

  const activity = d?.activity ?? live?.activity;
  parts.push(el("h3", {}, "Now"));
  parts.push(el("p", {}, activity || "—", live?.location ? el("span", { class: "sub" }, ` at ${live.location}`) : null));
  if (typeof live?.mood === "number") parts.push(el("p", { class: "sub" }, `mood ${fixed(live.mood)}`));

  if (d) {
    parts.push(el("h3", {}, "Traits"));
    for (const t of TRAITS) {
      const v = d.traits?.[t];
      parts.push(
        el(
          "div",
          { class: "trait" },
          el("span", {}, t),
          el("span", { class: "bar" }, el("span", { class: "fill", style: `width: ${Math.round((v || 0) * 100)}%` })),
          el("span", { class: "val" }, fixed(v)),
        ),
      );
    }

    parts.push(el("h3", {}, "Plan"));
    if (d.plan) {
      parts.push(el("p", {}, d.plan.goal));
      parts.push(el("ol", {}, d.plan.steps.map((s, i) => el("li", i === d.plan.current ? { class: "current" } : {}, s))));
    } else {
      parts.push(el("p", { class: "note" }, "no plan right now"));
    }

    parts.push(el("h3", {}, "Schedule"));
    parts.push(
      el(
        "table",
        {},
        d.schedule.map((s) =>
          el(
            "tr",
            isCurrentSlot(s) ? { class: "current" } : {},
            el("td", {}, `${s.start}–${s.end}`),
            el("td", {}, s.activity, s.location ? el("span", { class: "sub" }, ` @ ${s.location}`) : null),
          ),
        ),
      ),
    );

    parts.push(el("h3", {}, "Relationships"));
    if (d.relationships.length) {
      parts.push(
        el(
          "table",
          {},
          el("tr", {}, el("th", {}, "with"), el("th", {}, "as"), el("th", { class: "num" }, "affection"), el("th", { class: "num" }, "trust")),
          d.relationships.map((r) =>
            el("tr", {}, el("td", {}, nameOf(r.with)), el("td", {}, r.kind), el("td", { class: "num" }, fixed(r.affection, 0)), el("td", { class: "num" }, fixed(r.trust, 0))),
          ),
        ),
      );
    } else {
      parts.push(el("p", { class: "note" }, "nobody yet"));
    }
  } else if (String(id).startsWith("a:") && !state.panelError) {
    parts.push(el("p", { class: "note" }, "asking…"));
  }

  if (canSeeMemories() && String(id).startsWith("a:")) {
    parts.push(el("h3", {}, `Top ${MEMORIES_K} memories`));
    if (!state.memories) parts.push(el("p", { class: "note" }, "asking…"));
    else if (!state.memories.length) parts.push(el("p", { class: "note" }, "no memories yet"));
    for (const m of state.memories || []) {
      const terms = [
        `score ${fixed(m.score)}`,
        `recency ${fixed(m.recency)}`,
        `importance ${fixed(m.importance_score)} (${m.importance}/10)`,
        `relevance ${fixed(m.relevance)}`,
      ];
      if (typeof m.emotion === "number") terms.push(`emotion ${fixed(m.emotion)}`);
      parts.push(
        el(
          "div",
          { class: "memory" },
          el("p", { class: "content" }, m.content),
          el("div", { class: "terms" }, `${m.kind} · ${m.created.replace("T", " ")} · ${terms.join(" · ")}`),
        ),
      );
    }
  }

  body.replaceChildren(...parts);
  $("panel").dataset.agent = id;
}

$("close").addEventListener("click", closePanel);
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") closePanel();
});

// --- login ----------------------------------------------------------------------

function renderLogin() {
  const loggedIn = Boolean(token() || state.memoryToken);
  $("login").hidden = loggedIn;
  $("logout").hidden = !loggedIn;
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  const body = { username: form.username.value, password: form.password.value };
  try {
    const res = await fetch("/auth/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await res.json().catch(() => ({}));
    if (!res.ok || !answer.token) {
      setStatus("down", `login refused: ${answer.message || `HTTP ${res.status}`}`);
      return;
    }
    form.reset();
    setToken(answer.token);
    renderLogin();
    reconnect();
  } catch (e) {
    setStatus("down", `login failed: ${e.message || e}`);
  }
});

$("logout").addEventListener("click", async () => {
  const t = token() || state.memoryToken;
  setToken(null);
  renderLogin();
  if (t) {
    // revoke it; the page forgets it whatever the answer
    await fetch("/auth/logout", { method: "POST", headers: { authorization: `Bearer ${t}` } }).catch(() => {});
  }
  reconnect();
});

// --- the test hook --------------------------------------------------------------

/** Uncaught errors of this page, for tests to assert there are none. */
const pageErrors = [];
window.addEventListener("error", (ev) => pageErrors.push(String(ev.message)));
window.addEventListener("unhandledrejection", (ev) => pageErrors.push(String(ev.reason)));

/**
 * For end-to-end tests: whether a snapshot has arrived, the last tick, the
 * map drawn, and where each entity is drawn now, in viewport CSS pixels
 * (where to click); `x`, `y` are its position in tiles.
 */
window.hearthViewer = {
  get ready() {
    return state.ready;
  },
  get tick() {
    return state.tick;
  },
  get role() {
    return state.welcome?.role ?? null;
  },
  get selected() {
    return state.selected;
  },
  /** The map drawn: {url, width, height} in tiles, or null (see `mapError`). */
  get map() {
    return state.map ? { url: state.map.url, width: state.map.width, height: state.map.height } : null;
  },
  get mapError() {
    return state.mapError;
  },
  /** Uncaught errors and rejected promises since the page loaded. */
  errors() {
    return [...pageErrors];
  },
  entities() {
    const now = performance.now();
    const rect = canvas.getBoundingClientRect();
    return [...state.entities.values()].map((e) => {
      const s = screenOf(e, now);
      const p = positionOf(e, now);
      return { id: e.id, name: e.name, kind: e.kind, x: p.x, y: p.y, screenX: rect.left + s.x, screenY: rect.top + s.y };
    });
  },
};

// --- start ------------------------------------------------------------------------

$("world").textContent = WORLD;
renderLogin();
renderHeader();
connect();
requestAnimationFrame(frame);
