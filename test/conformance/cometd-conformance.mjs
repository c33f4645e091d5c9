// Runs the CometD JavaScript client against a Bayeux server over one transport
// and prints a JSON result. Usage: node cometd-conformance.mjs <url> <transport>
// Exit status 0 means every step passed.
import {adapt} from "cometd-nodejs-client";
import {CometD} from "cometd";
import {AckExtension} from "cometd/AckExtension.js";
import {TimeSyncExtension} from "cometd/TimeSyncExtension.js";
import {installScriptShim} from "./jsonp-shim.mjs";

const [url, transport] = process.argv.slice(2);
const steps = [];

function finish(ok, error) {
    process.stdout.write(JSON.stringify({client: "cometd", transport, ok, error: error ? String(error) : undefined, steps}) + "\n");
    process.exit(ok ? 0 : 1);
}

const overall = setTimeout(() => finish(false, "timed out; last step: " + (steps[steps.length - 1] || "none")), 20000);

adapt();
if (transport === "callback-polling") {
    installScriptShim(global.window);
}

function newClient(withExtensions) {
    const cometd = new CometD();
    for (const t of cometd.getTransportTypes()) {
        if (t !== transport) {
            cometd.unregisterTransport(t);
        }
    }
    if (cometd.getTransportTypes().length !== 1) {
        throw new Error("transport " + transport + " not available: " + cometd.getTransportTypes());
    }
    if (withExtensions) {
        cometd.registerExtension("ack", new AckExtension());
        cometd.registerExtension("timesync", new TimeSyncExtension());
    }
    cometd.configure({url, logLevel: "warn", maxNetworkDelay: 5000});
    return cometd;
}

function step(name, fn) {
    steps.push(name);
    return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(name + ": timed out")), 10000);
        fn((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(new Error(name + ": " + e)); });
    });
}

function expectReply(name, ok, ko) {
    return (reply) => reply.successful ? ok(reply) : ko(JSON.stringify(reply));
}

// waiter returns a promise for the next message on a listener and its feeder.
function mailbox() {
    const queue = [];
    const waiting = [];
    return {
        put(m) {
            const w = waiting.shift();
            if (w) { w(m); } else { queue.push(m); }
        },
        next(name) {
            return step(name, (resolve) => {
                const m = queue.shift();
                if (m) { resolve(m); } else { waiting.push(resolve); }
            });
        },
        size() { return queue.length; },
    };
}

async function main() {
    const sub = newClient(true);
    const pub = newClient(false);

    const hs = await step("handshake subscriber", (ok, ko) => sub.handshake(expectReply("handshake", ok, ko)));
    if (!hs.clientId) throw new Error("no clientId");
    if (!hs.ext || hs.ext.ack !== true) throw new Error("server did not accept the ack extension: " + JSON.stringify(hs.ext));
    if (!hs.ext.timesync || typeof hs.ext.timesync.ts !== "number") throw new Error("no timesync reply: " + JSON.stringify(hs.ext));
    await step("handshake publisher", (ok, ko) => pub.handshake(expectReply("handshake", ok, ko)));
    if (sub.getTransport().type !== transport || pub.getTransport().type !== transport) {
        throw new Error("negotiated " + sub.getTransport().type + " instead of " + transport);
    }

    const room = mailbox();
    const wild = mailbox();
    const deep = mailbox();
    let roomSub, wildSub, deepSub;
    await step("subscribe /conf/room", (ok, ko) => { roomSub = sub.subscribe("/conf/room", (m) => room.put(m), expectReply("sub", ok, ko)); });
    await step("subscribe /conf/wild/*", (ok, ko) => { wildSub = sub.subscribe("/conf/wild/*", (m) => wild.put(m), expectReply("sub", ok, ko)); });
    await step("subscribe /conf/deep/**", (ok, ko) => { deepSub = sub.subscribe("/conf/deep/**", (m) => deep.put(m), expectReply("sub", ok, ko)); });

    await step("publish /conf/room", (ok, ko) => pub.publish("/conf/room", {n: 1}, expectReply("publish", ok, ko)));
    const m1 = await room.next("receive /conf/room");
    if (m1.data.n !== 1 || m1.channel !== "/conf/room") throw new Error("bad message " + JSON.stringify(m1));

    await step("publish /conf/wild/x", (ok, ko) => pub.publish("/conf/wild/x", {n: 2}, expectReply("publish", ok, ko)));
    const m2 = await wild.next("receive via /conf/wild/*");
    if (m2.data.n !== 2 || m2.channel !== "/conf/wild/x") throw new Error("bad message " + JSON.stringify(m2));

    await step("publish /conf/deep/a/b", (ok, ko) => pub.publish("/conf/deep/a/b", {n: 3}, expectReply("publish", ok, ko)));
    const m3 = await deep.next("receive via /conf/deep/**");
    if (m3.data.n !== 3 || m3.channel !== "/conf/deep/a/b") throw new Error("bad message " + JSON.stringify(m3));

    await step("unsubscribe /conf/room", (ok, ko) => sub.unsubscribe(roomSub, expectReply("unsub", ok, ko)));
    // Publish to the dropped channel, then to a kept one: messages of one session
    // arrive in order, so when the second arrives the first would have too.
    await step("publish after unsubscribe", (ok, ko) => pub.publish("/conf/room", {n: 4}, expectReply("publish", ok, ko)));
    await step("publish /conf/wild/y", (ok, ko) => pub.publish("/conf/wild/y", {n: 5}, expectReply("publish", ok, ko)));
    const m5 = await wild.next("receive after unsubscribe");
    if (m5.data.n !== 5) throw new Error("bad message " + JSON.stringify(m5));
    if (room.size() !== 0) throw new Error("received a message after unsubscribing");

    // Self delivery: a session receives what it publishes on a subscribed channel.
    await step("self publish", (ok, ko) => sub.publish("/conf/wild/self", {n: 6}, expectReply("publish", ok, ko)));
    const m6 = await wild.next("receive own message");
    if (m6.data.n !== 6) throw new Error("bad message " + JSON.stringify(m6));

    sub.unsubscribe(wildSub);
    sub.unsubscribe(deepSub);
    await step("disconnect subscriber", (ok, ko) => sub.disconnect(expectReply("disconnect", ok, ko)));
    await step("disconnect publisher", (ok, ko) => pub.disconnect(expectReply("disconnect", ok, ko)));
}

main().then(() => { clearTimeout(overall); finish(true); }, (e) => { clearTimeout(overall); finish(false, e && e.message || e); });
