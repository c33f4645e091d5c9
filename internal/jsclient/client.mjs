// A third-party Bayeux client driven line by line, for the cluster tests.
//
// Usage: node client.mjs <cometd|faye> <url> <transport> [ack|token=<JWT>]
// ("ack" registers the CometD client's ack extension; "token=" makes the
// CometD client handshake with that token in ext.auth.token).
// with CLUSTER_NODE_MODULES set to the node_modules directory holding the npm
// clients (the Go test passes test/conformance/node_modules, so one install
// serves both suites).
//
// stdin takes one JSON command per line:
//   {"op":"subscribe","channel":"/a/*"}
//   {"op":"publish","channel":"/a/b","data":{...}}
//   {"op":"disconnect"}
//   {"op":"refresh","token":"<JWT>"}  (CometD) sends the token with the next /meta/connect
// stdout reports one JSON event per line:
//   {"ev":"ready","clientId":"..."}                 after the first handshake
//   {"ev":"handshake","clientId":"..."}            on every successful handshake
//                                                  (a CometD client subscribes again then)
//   {"ev":"subscribed","channel":"..."}            or {"ev":"error",...}
//   {"ev":"published","channel":"..."}             (publish-async: with data;
//   {"ev":"publish-failed",...}                     or this on failure)
//   {"ev":"message","sub":"<pattern>","channel":"...","data":...}
//   {"ev":"meta-error","channel":"...","error":"..."} for every unsuccessful meta reply
//   {"ev":"disconnected"}
//   {"ev":"auth","expires":<unix s>,"error":"..."}  a connect reply's ext.auth (CometD)
// The process exits when stdin closes.
import {createInterface} from "node:readline";
import {join} from "node:path";
import {pathToFileURL} from "node:url";
import {createRequire} from "node:module";

const [kind, url, transport, option] = process.argv.slice(2);
const modules = process.env.CLUSTER_NODE_MODULES;
if (!modules) {
    throw new Error("CLUSTER_NODE_MODULES is not set");
}

function emit(ev) {
    process.stdout.write(JSON.stringify(ev) + "\n");
}

let fresh = null; // a token for the next /meta/connect

async function cometdClient() {
    const {adapt} = await import(pathToFileURL(join(modules, "cometd-nodejs-client", "cometd-nodejs-client.js")).href);
    const {CometD} = await import(pathToFileURL(join(modules, "cometd", "cometd.js")).href);
    adapt();
    if (transport === "callback-polling") {
        const {installScriptShim} = await import(pathToFileURL(join(modules, "..", "jsonp-shim.mjs")).href);
        installScriptShim(global.window);
    }
    const cometd = new CometD();
    if (option === "ack") {
        const {AckExtension} = await import(pathToFileURL(join(modules, "cometd", "AckExtension.js")).href);
        cometd.registerExtension("ack", new AckExtension());
    }
    for (const t of cometd.getTransportTypes()) {
        if (t !== transport) {
            cometd.unregisterTransport(t);
        }
    }
    cometd.configure({url, logLevel: "warn", maxNetworkDelay: 10000});
    const token = option && option.startsWith("token=") ? option.slice("token=".length) : null;
    cometd.registerExtension("auth", {
        outgoing(m) {
            if (m.channel === "/meta/handshake" && token) {
                m.ext = Object.assign(m.ext || {}, {auth: {token}});
            }
            if (m.channel === "/meta/connect" && fresh) {
                m.ext = Object.assign(m.ext || {}, {auth: {token: fresh}});
                fresh = null;
            }
            return m;
        },
        incoming(m) {
            if (m.channel === "/meta/connect" && m.ext && m.ext.auth) {
                emit({ev: "auth", expires: m.ext.auth.expires, error: m.ext.auth.error || ""});
            }
            return m;
        },
    });
    cometd.registerExtension("spy", {
        incoming(m) {
            if (m.channel && m.channel.startsWith("/meta/") && m.successful === false) {
                emit({ev: "meta-error", channel: m.channel, error: m.error || ""});
            }
            if (m.channel === "/meta/handshake" && m.successful) {
                emit({ev: "handshake", clientId: m.clientId});
            }
            return m;
        },
    });
    // As the CometD documentation has applications do, subscriptions are made
    // again after a new handshake (the server lost the session).
    const subscriptions = new Set();
    const deliver = (channel) => (m) => emit({ev: "message", sub: channel, channel: m.channel, data: m.data});
    let handshakes = 0;
    cometd.addListener("/meta/handshake", (m) => {
        if (m.successful && ++handshakes > 1) {
            for (const channel of subscriptions) {
                cometd.subscribe(channel, deliver(channel));
            }
        }
    });
    await new Promise((resolve, reject) => cometd.handshake((r) => r.successful ? resolve(r) : reject(new Error(JSON.stringify(r)))));
    return {
        refresh(t) {
            fresh = t;
        },
        clientId: () => cometd.getClientId(),
        subscribe(channel) {
            if (subscriptions.has(channel)) {
                return Promise.resolve(); // made again after each handshake already
            }
            subscriptions.add(channel);
            return new Promise((resolve, reject) => cometd.subscribe(channel, deliver(channel),
                (r) => r.successful ? resolve() : reject(new Error(JSON.stringify(r)))));
        },
        publish(channel, data) {
            return new Promise((resolve, reject) => cometd.publish(channel, data,
                (r) => r.successful ? resolve() : reject(new Error(JSON.stringify(r)))));
        },
        disconnect() {
            return new Promise((resolve) => cometd.disconnect(() => resolve()));
        },
    };
}

async function fayeClient() {
    const require = createRequire(join(modules, "faye", "package.json"));
    const faye = require("faye");
    const client = new faye.Client(url, {timeout: 30, retry: 1});
    if (transport === "long-polling") {
        client.disable("websocket");
    }
    client.addExtension({
        incoming(m, callback) {
            if (m.channel && m.channel.startsWith("/meta/") && m.successful === false) {
                emit({ev: "meta-error", channel: m.channel, error: m.error || ""});
            }
            if (m.channel === "/meta/handshake" && m.successful) {
                emit({ev: "handshake", clientId: m.clientId});
            }
            callback(m);
        },
    });
    await new Promise((resolve) => client.connect(resolve));
    return {
        clientId: () => client._dispatcher.clientId,
        subscribe(channel) {
            return client.subscribe(channel, (data) => emit({ev: "message", sub: channel, channel: null, data}));
        },
        publish(channel, data) {
            return client.publish(channel, data);
        },
        disconnect() {
            client.disconnect();
            return Promise.resolve();
        },
    };
}

const client = await (kind === "cometd" ? cometdClient() : fayeClient());
emit({ev: "ready", clientId: client.clientId()});

const rl = createInterface({input: process.stdin});
rl.on("line", (line) => {
    if (!line.trim()) {
        return;
    }
    const cmd = JSON.parse(line);
    switch (cmd.op) {
    case "subscribe":
        Promise.resolve(client.subscribe(cmd.channel)).then(
            () => emit({ev: "subscribed", channel: cmd.channel}),
            (e) => emit({ev: "error", op: "subscribe", channel: cmd.channel, error: String(e && e.message || e)}));
        break;
    case "publish-async":
        // Reports the outcome as "published" or "publish-failed", never as an
        // error: a test that publishes at a fixed rate counts the failures.
        Promise.resolve(client.publish(cmd.channel, cmd.data)).then(
            () => emit({ev: "published", channel: cmd.channel, data: cmd.data}),
            (e) => emit({ev: "publish-failed", channel: cmd.channel, data: cmd.data, error: String(e && e.message || e)}));
        break;
    case "publish":
        Promise.resolve(client.publish(cmd.channel, cmd.data)).then(
            () => emit({ev: "published", channel: cmd.channel}),
            (e) => emit({ev: "error", op: "publish", channel: cmd.channel, error: String(e && e.message || e)}));
        break;
    case "refresh":
        client.refresh(cmd.token);
        break;
    case "disconnect":
        client.disconnect().then(() => emit({ev: "disconnected"}));
        break;
    default:
        emit({ev: "error", error: "unknown op " + cmd.op});
    }
});
rl.on("close", () => process.exit(0));
