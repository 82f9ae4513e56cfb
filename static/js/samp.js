// "Send to TOPCAT / Aladin": SAMP Web Profile from the page to the hub on the user's machine.
//
// The protocol is Mark Taylor's sampjs (npm "sampjs", served from /static/vendor/sampjs/samp.js
// by webapp/staticfinders.py): plain XMLHttpRequest XML-RPC to http://localhost:21012, no eval,
// so it runs under the Content-Security-Policy (connect-src lists the hub, webapp/settings.py).
// This file adds what Latent Sky needs on top of it:
//   * buttons [data-samp-send='{"kind": ..., ...}'] ask the server for a signed, absolute,
//     10-minute URL of the table (/samp/link) and broadcast table.load.votable (or
//     image.load.fits for kind "cutout"); [data-samp-point='{"ra":..,"dec":..}'] sends
//     coord.pointAt.sky.  Status goes to the nearest [data-samp-status] (else #samp-status).
//   * LS.samp.listen(onIds): the map page receives table.load.votable, table.select.rowList
//     and table.highlight.row; a table is fetched through the hub's URL translator, read by
//     the server (/samp/rows: galaxy ids, or RA/Dec cross-matched) and becomes the selection.
//   * astropy's hub answers samp.webhub.pullCallbacks at once instead of waiting, and sampjs
//     then polls again at once: an empty answer is held back to one poll a second.
"use strict";

if (window.module && window.module.__lsShim) delete window.module;  // samp_module_shim.js

(function () {
  const HUB = "127.0.0.1:21012";
  const NO_HUB = `No SAMP hub found at ${HUB} — start TOPCAT or Aladin`;
  const NO_LIB = "SAMP is not installed on this server (npm ci installs sampjs)";
  const POLL_MS = 1000;
  const S = { connector: null, onIds: null, sent: new Map(), lastStatus: "" };
  LS.samp = S;

  function lib() { return typeof window.samp !== "undefined" ? window.samp : null; }

  // ------------------------------------------------------------------ status
  function status(text, el, kind) {
    S.lastStatus = text;
    const box = (el && el.closest && el.closest("[data-samp-scope]")?.querySelector("[data-samp-status]")) ||
                document.getElementById("samp-status");
    if (box) { box.textContent = text; box.dataset.state = kind || "info"; box.hidden = false; }
    document.dispatchEvent(new CustomEvent("ls:samp-status", { detail: { text, kind } }));
  }

  // ------------------------------------------------------------------ connection
  function throttlePolls(samp) {
    const proto = samp.XmlRpcClient.prototype;
    if (proto.__lsThrottled) return;
    const execute = proto.execute;
    proto.execute = function (req, ok, err) {
      if (req.methodName !== "samp.webhub.pullCallbacks") return execute.call(this, req, ok, err);
      const started = Date.now();
      return execute.call(this, req, result => {
        const wait = result && result.length ? 0 : Math.max(0, POLL_MS - (Date.now() - started));
        setTimeout(() => ok(result), wait);
      }, err);
    };
    proto.__lsThrottled = true;
  }

  function connector() {
    const samp = lib();
    if (!samp) throw new Error(NO_LIB);
    if (S.connector) return S.connector;
    throttlePolls(samp);
    const meta = { "samp.name": "Latent Sky", "samp.description.text": "Galaxy survey maps, collections and anomaly lists",
                   "home.page": location.origin + "/" };
    let client = null, subs = null;
    if (S.onIds) {
      client = new samp.CallableClient();
      client.init = conn => { client.connection = conn; };  // sampjs' default init keeps no connection (reply needs it)
      client.callHandler["table.load.votable"] = (sender, msg) => { receiveTable(msg["samp.params"] || {}); };
      client.callHandler["table.select.rowList"] = (sender, msg) => { receiveRowList(msg["samp.params"] || {}); };
      client.callHandler["table.highlight.row"] = (sender, msg) => { receiveHighlight(msg["samp.params"] || {}); };
      subs = client.calculateSubscriptions();
    }
    S.connector = new samp.Connector("Latent Sky", meta, client, subs);
    S.connector.onunreg = () => { S.connected = false; document.dispatchEvent(new CustomEvent("ls:samp-connected", { detail: false })); };
    return S.connector;
  }

  function ping() { return new Promise(resolve => lib().ping(resolve)); }

  // Resolves with a registered sampjs Connection; rejects with a readable Error.
  S.connect = async function (el) {
    const c = connector();
    if (!c.connection) {
      if (!(await ping())) throw new Error(NO_HUB);
      status("Asking the SAMP hub to accept Latent Sky (answer its dialog)…", el);
    }
    return new Promise((resolve, reject) => c.runWithConnection(conn => {
      S.connected = true;
      document.dispatchEvent(new CustomEvent("ls:samp-connected", { detail: true }));
      resolve(conn);
    }, e => reject(new Error(/no hub/i.test(String(e)) ? NO_HUB : "SAMP hub refused: " + String(e)))));
  };

  function call(conn, method, args) {
    return new Promise((resolve, reject) => conn[method](args, resolve, e => reject(new Error(String(e)))));
  }

  // ------------------------------------------------------------------ sending
  // spec: {kind: "ids"|"collection"|"anomalies"|"task"|"cutout", ...}; resolves with the link.
  S.send = async function (spec, el) {
    try {
      const conn = await S.connect(el);
      const link = await LS.postJSON(LS.url("samp_link"), spec);
      const params = link.mtype === "image.load.fits"
        ? { url: link.url, name: link.name, "image-id": link.url }
        : { url: link.url, name: link.name, "table-id": link.url };
      if (link.ids) S.sent.set(link.url, link.ids);
      await call(conn, "notifyAll", [new (lib().Message)(link.mtype, params)]);
      const what = link.mtype === "image.load.fits" ? "cutout" : (link.ids ? `${link.ids.length} rows` : "table");
      status(`Sent ${what} to SAMP (TOPCAT / Aladin)` + (link.cut ? " — cut to the first 20,000" : ""), el, "ok");
      return link;
    } catch (e) {
      status(e.message || String(e), el, "error");
      return null;
    }
  };

  S.pointAt = async function (ra, dec, el) {
    try {
      const conn = await S.connect(el);
      await call(conn, "notifyAll", [new (lib().Message)("coord.pointAt.sky", { ra: String(ra), dec: String(dec) })]);
      status(`Sent position ${(+ra).toFixed(5)}, ${(+dec).toFixed(5)} to SAMP`, el, "ok");
      return true;
    } catch (e) {
      status(e.message || String(e), el, "error");
      return false;
    }
  };

  // ------------------------------------------------------------------ receiving (map page)
  S.listen = function (onIds, setId) { S.onIds = onIds; S.setId = setId; };

  function translated(url) {
    if (url.startsWith(location.origin + "/")) return url;  // our own signed link
    const conn = S.connector && S.connector.connection;
    return conn ? conn.translateUrl(url) : url;
  }

  async function receiveTable(params) {
    const url = params.url;
    if (!url || !S.onIds) return;
    try {
      status(`Receiving ${params.name || "a table"} from SAMP…`);
      const res = await fetch(translated(url));
      if (!res.ok) throw new Error(`could not fetch the table (${res.status})`);
      const body = await res.arrayBuffer();
      const reply = await fetch(LS.url("samp_rows") + "?set=" + encodeURIComponent(S.setId), {
        method: "POST", credentials: "same-origin", body,
        headers: { "Content-Type": "application/x-votable+xml", "X-CSRFToken": LS.csrf(), Accept: "application/json" },
      });
      const data = await reply.json();
      if (!reply.ok) throw new Error(data.error || reply.statusText);
      S.sent.set(params["table-id"] || url, data.ids);
      S.onIds(data.ids, { source: "samp", name: params.name, ...data });
      status(`${data.matched} of ${data.rows} rows from ${params.name || "SAMP"} selected (by ${data.by === "galaxy_id" ? "id" : "position"})`, null, "ok");
    } catch (e) {
      status("SAMP table: " + (e.message || e), null, "error");
    }
  }

  function idsOfSentTable(params) {
    return S.sent.get(params["table-id"]) || S.sent.get(params.url) || null;
  }

  function receiveRowList(params) {
    const ids = idsOfSentTable(params);
    if (!ids || !S.onIds) return;
    const rows = (params["row-list"] || []).map(Number).filter(i => i >= 0 && i < ids.length);
    S.onIds(rows.map(i => ids[i]), { source: "samp", rowList: true });
  }

  function receiveHighlight(params) {
    const ids = idsOfSentTable(params);
    const row = Number(params.row);
    if (!ids || !S.onIds || !(row >= 0 && row < ids.length)) return;
    S.onIds([ids[row]], { source: "samp", highlight: ids[row] });
  }

  // ------------------------------------------------------------------ buttons
  function bind() {
    document.querySelectorAll("[data-samp-send]").forEach(b => b.addEventListener("click", ev => {
      ev.preventDefault();
      let spec;
      try { spec = JSON.parse(b.dataset.sampSend); } catch (e) { return; }
      if (b.dataset.sampQuery !== undefined) spec.query = b.dataset.sampQuery;  // the anomaly list's filter
      S.send(spec, b);
    }));
    document.querySelectorAll("[data-samp-point]").forEach(b => b.addEventListener("click", ev => {
      ev.preventDefault();
      const p = JSON.parse(b.dataset.sampPoint);
      S.pointAt(p.ra, p.dec, b);
    }));
    if (!lib()) document.querySelectorAll("[data-samp-send], [data-samp-point]").forEach(b => { b.title = NO_LIB; });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", bind); else bind();
})();
