// Drives the CometD JavaScript client through a policy reload.
// Usage: node reload.mjs <node_modules dir> <url> <transport> <good token> <expired token>
// Prints {"event":"subscribed"} when the Go test should change the policy, then
// one final JSON line {"ok": bool, "error": string, "steps": [...]}.
import {pathToFileURL} from "node:url";
import path from "node:path";

const [modules, url, transport, goodToken, expiredToken] = process.argv.slice(2);
const {adapt} = await import(pathToFileURL(path.join(modules, "cometd-nodejs-client/cometd-nodejs-client.js")).href);
const {CometD} = await import(pathToFileURL(path.join(modules, "cometd/cometd.js")).href);

const steps = [];
function print(v) { process.stdout.write(JSON.stringify(v) + "\n"); }
function finish(ok, error) {
    print({ok, error: error ? String(error) : undefined, steps});
    process.exit(ok ? 0 : 1);
}
setTimeout(() => finish(false, "timed out; last step: " + (steps[steps.length - 1] || "none")), 40000);

adapt();

function newClient() {
    const c = new CometD();
    for (const t of c.getTransportTypes()) {
        if (t !== transport) c.unregisterTransport(t);
    }
    c.configure({url, logLevel: "warn", maxNetworkDelay: 5000});
    return c;
}

function step(name, fn) {
    steps.push(name);
    return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(name + ": timed out")), 20000);
        fn((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(new Error(name + ": " + e)); });
    });
}

function mailbox() {
    const queue = [], waiting = [];
    return {
        put(m) { const w = waiting.shift(); if (w) w(m); else queue.push(m); },
        next(name) { return step(name, (ok) => { const m = queue.shift(); if (m) ok(m); else waiting.push(ok); }); },
    };
}

async function main() {
    // A refused token: 403::handshake_denied with reconnect "none".
    const bad = newClient();
    const denied = await step("expired token refused", (ok) => bad.handshake({ext: {auth: {token: expiredToken}}}, ok));
    if (denied.successful || denied.error !== "403::handshake_denied") throw new Error("expired token: " + JSON.stringify(denied));
    if (!denied.advice || denied.advice.reconnect !== "none") throw new Error("advice: " + JSON.stringify(denied.advice));

    const c = newClient();
    let handshakes = 0;
    c.addListener("/meta/handshake", (m) => { if (m.successful) handshakes++; });
    const notices = mailbox();
    c.addListener("/service/policy/revoked", (m) => notices.put(m));
    const publicMsgs = mailbox();

    const hs = await step("handshake with token", (ok, ko) => c.handshake({ext: {auth: {token: goodToken}}}, (r) => r.successful ? ok(r) : ko(JSON.stringify(r))));
    const clientId = hs.clientId;
    await step("subscribe /chat/public", (ok, ko) => c.subscribe("/chat/public", (m) => publicMsgs.put(m), (r) => r.successful ? ok(r) : ko(JSON.stringify(r))));
    let privateSub;
    await step("subscribe /chat/private", (ok, ko) => { privateSub = c.subscribe("/chat/private", () => {}, (r) => r.successful ? ok(r) : ko(JSON.stringify(r))); });
    const sneaky = await step("subscribe /chat/* refused", (ok) => c.subscribe("/chat/*", () => {}, ok));
    if (sneaky.successful) throw new Error("wildcard subscription allowed: " + JSON.stringify(sneaky));

    print({event: "subscribed"});
    const notice = await notices.next("revocation notice");
    if (!notice.data || notice.data.subscription !== "/chat/private" || notice.data.error !== "403::subscription_revoked") {
        throw new Error("notice: " + JSON.stringify(notice));
    }
    await step("publish /chat/public after reload", (ok, ko) => c.publish("/chat/public", {n: 1}, (r) => r.successful ? ok(r) : ko(JSON.stringify(r))));
    const got = await publicMsgs.next("receive on /chat/public after reload");
    if (!got.data || got.data.n !== 1) throw new Error("message: " + JSON.stringify(got));
    const pub = await step("publish /chat/private refused", (ok) => c.publish("/chat/private", {n: 2}, ok));
    if (pub.successful || !String(pub.error).startsWith("403::")) throw new Error("publish after revocation: " + JSON.stringify(pub));
    // The client still holds its own record of the subscription (it would answer a
    // new subscribe itself); an application drops it on the notice.
    await step("drop the revoked subscription", (ok) => c.unsubscribe(privateSub, ok));
    const resub = await step("resubscribe /chat/private refused", (ok) => c.subscribe("/chat/private", () => {}, ok));
    if (resub.successful) throw new Error("resubscribe after revocation: " + JSON.stringify(resub));

    if (c.getClientId() !== clientId || handshakes !== 1) {
        throw new Error(`session did not survive: clientId ${clientId} -> ${c.getClientId()}, handshakes ${handshakes}`);
    }
    await step("disconnect", (ok) => c.disconnect(ok));
}

main().then(() => finish(true), (e) => finish(false, e));
