// Third-party Bayeux clients for the end-to-end suite, one role per process.
//
//   node clients.mjs sub cometd|faye <url> <channel> <count> [transport]
//       subscribes, prints {"event":"ready"} once the subscription is confirmed,
//       then one {"event":"message","data":...} line per message; exits 0 after
//       <count> messages.
//   node clients.mjs probe cometd|faye <url> <channel>
//       tries to subscribe once, prints {"event":"subscribe","successful":...,
//       "error":...} and exits 0 either way (1 only when it cannot tell).
//   node clients.mjs pub faye|cometd <url> <channel> <json>
//       publishes one message, prints {"event":"published"} and exits 0.
//
// Every process gives up and exits 1 after DEADLINE_MS (default 60000).
import {adapt} from "cometd-nodejs-client";
import {CometD} from "cometd";
import faye from "faye";

const [role, client, url, channel, arg, transport] = process.argv.slice(2);
const deadline = Number(process.env.DEADLINE_MS || 60000);

function emit(obj) { process.stdout.write(JSON.stringify(obj) + "\n"); }
function fail(msg) { emit({event: "error", error: String(msg)}); process.exit(1); }
setTimeout(() => fail(`${role} ${client}: timed out after ${deadline}ms`), deadline).unref();

function cometdClient() {
    adapt();
    const c = new CometD();
    if (transport) {
        for (const t of c.getTransportTypes()) {
            if (t !== transport) c.unregisterTransport(t);
        }
    }
    c.configure({url, logLevel: "warn", maxNetworkDelay: 10000});
    return c;
}

function fayeClient() {
    const c = new faye.Client(url, {timeout: 30, retry: 1});
    if (transport === "long-polling") c.disable("websocket");
    return c;
}

function subscribe() {
    const want = Number(arg);
    let got = 0;
    const onMessage = (data) => {
        emit({event: "message", data});
        if (++got >= want) process.exit(0);
    };
    if (client === "cometd") {
        const c = cometdClient();
        c.handshake((hs) => {
            if (!hs.successful) fail("handshake: " + JSON.stringify(hs));
            c.subscribe(channel, (m) => onMessage(m.data), (reply) => {
                if (!reply.successful) fail("subscribe: " + JSON.stringify(reply));
                emit({event: "ready"});
            });
        });
    } else if (client === "faye") {
        const c = fayeClient();
        c.subscribe(channel, onMessage).then(
            () => emit({event: "ready"}),
            (e) => fail("subscribe: " + (e && e.message || JSON.stringify(e))));
    } else {
        fail("unknown client " + client);
    }
}

function publish() {
    const data = JSON.parse(arg);
    if (client === "faye") {
        const c = fayeClient();
        c.publish(channel, data).then(
            () => { emit({event: "published"}); process.exit(0); },
            (e) => fail("publish: " + (e && e.message || JSON.stringify(e))));
    } else if (client === "cometd") {
        const c = cometdClient();
        c.handshake((hs) => {
            if (!hs.successful) fail("handshake: " + JSON.stringify(hs));
            c.publish(channel, data, (reply) => {
                if (!reply.successful) fail("publish: " + JSON.stringify(reply));
                emit({event: "published"});
                process.exit(0);
            });
        });
    } else {
        fail("unknown client " + client);
    }
}

function probe() {
    const report = (successful, error) => { emit({event: "subscribe", successful, error}); process.exit(0); };
    if (client === "cometd") {
        const c = cometdClient();
        c.handshake((hs) => {
            if (!hs.successful) fail("handshake: " + JSON.stringify(hs));
            c.subscribe(channel, () => {}, (reply) => report(!!reply.successful, reply.error));
        });
    } else if (client === "faye") {
        const c = fayeClient();
        c.subscribe(channel, () => {}).then(() => report(true), (e) => report(false, e && e.message || String(e)));
    } else {
        fail("unknown client " + client);
    }
}

if (role === "sub") subscribe();
else if (role === "probe") probe();
else if (role === "pub") publish();
else fail("usage: clients.mjs sub|probe|pub cometd|faye <url> <channel> <count|json> [transport]");
