// Runs the Faye Node client against a Bayeux server over one transport and
// prints a JSON result. Usage: node faye-conformance.mjs <url> <transport>
// where transport is "long-polling" or "websocket". Faye's disable() is
// process-wide, so each transport needs its own process. Exit 0 means success.
import faye from "faye";

const [url, transport] = process.argv.slice(2);
const steps = [];

function finish(ok, error) {
    process.stdout.write(JSON.stringify({client: "faye", transport, ok, error: error ? String(error) : undefined, steps}) + "\n");
    process.exit(ok ? 0 : 1);
}

const overall = setTimeout(() => finish(false, "timed out; last step: " + (steps[steps.length - 1] || "none")), 20000);

function step(name, promiseFn) {
    steps.push(name);
    return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(name + ": timed out")), 10000);
        Promise.resolve(promiseFn()).then((v) => { clearTimeout(t); resolve(v); },
            (e) => { clearTimeout(t); reject(new Error(name + ": " + (e && e.message || JSON.stringify(e)))); });
    });
}

function mailbox() {
    const queue = [];
    const waiting = [];
    return {
        put(m) {
            const w = waiting.shift();
            if (w) { w(m); } else { queue.push(m); }
        },
        next(name) {
            return step(name, () => new Promise((resolve) => {
                const m = queue.shift();
                if (m !== undefined) { resolve(m); } else { waiting.push(resolve); }
            }));
        },
        size() { return queue.length; },
    };
}

// metaWatcher records meta replies so the script can assert on them.
function newClient() {
    const client = new faye.Client(url, {timeout: 30, retry: 1});
    if (transport === "long-polling") {
        client.disable("websocket");
    } else if (transport !== "websocket") {
        throw new Error("unsupported transport " + transport);
    }
    client.disable("eventsource");
    const replies = mailbox();
    client.addExtension({
        incoming(message, callback) {
            if (message.channel === "/meta/disconnect" || message.channel === "/meta/handshake") {
                replies.put(message);
            }
            callback(message);
        },
    });
    client.replies = replies;
    return client;
}

async function main() {
    const sub = newClient();
    const pub = newClient();
    await step("handshake", () => new Promise((resolve) => sub.connect(resolve)));
    await step("handshake publisher", () => new Promise((resolve) => pub.connect(resolve)));
    const hs = await sub.replies.next("handshake reply");
    if (!hs.successful || !hs.clientId) throw new Error("handshake reply " + JSON.stringify(hs));

    const room = mailbox();
    const wild = mailbox();
    const deep = mailbox();
    const roomSub = sub.subscribe("/conf/room", (m) => room.put(m));
    await step("subscribe /conf/room", () => roomSub);
    await step("subscribe /conf/wild/*", () => sub.subscribe("/conf/wild/*", (m) => wild.put(m)));
    await step("subscribe /conf/deep/**", () => sub.subscribe("/conf/deep/**", (m) => deep.put(m)));

    // Faye selects its transport asynchronously; by now it has settled.
    const selected = sub._dispatcher.connectionType;
    if (selected !== transport) throw new Error("negotiated " + selected + " instead of " + transport);

    await step("publish /conf/room", () => pub.publish("/conf/room", {n: 1}));
    const m1 = await room.next("receive /conf/room");
    if (m1.n !== 1) throw new Error("bad message " + JSON.stringify(m1));

    await step("publish /conf/wild/x", () => pub.publish("/conf/wild/x", {n: 2}));
    if ((await wild.next("receive via /conf/wild/*")).n !== 2) throw new Error("bad wildcard message");

    await step("publish /conf/deep/a/b", () => pub.publish("/conf/deep/a/b", {n: 3}));
    if ((await deep.next("receive via /conf/deep/**")).n !== 3) throw new Error("bad deep wildcard message");

    await step("unsubscribe /conf/room", () => roomSub.cancel());
    await step("publish after unsubscribe", () => pub.publish("/conf/room", {n: 4}));
    await step("publish /conf/wild/y", () => pub.publish("/conf/wild/y", {n: 5}));
    if ((await wild.next("receive after unsubscribe")).n !== 5) throw new Error("bad message after unsubscribe");
    if (room.size() !== 0) throw new Error("received a message after unsubscribing");

    sub.disconnect();
    const d = await sub.replies.next("disconnect subscriber");
    if (!d.successful) throw new Error("disconnect reply " + JSON.stringify(d));
    pub.disconnect();
    await pub.replies.next("handshake reply publisher");
    const d2 = await pub.replies.next("disconnect publisher");
    if (!d2.successful) throw new Error("disconnect reply " + JSON.stringify(d2));
}

main().then(() => { clearTimeout(overall); finish(true); }, (e) => { clearTimeout(overall); finish(false, e && e.message || e); });
