// Runs the CometD JavaScript client and Faye's browser client in a real
// headless Chromium (driven by puppeteer-core, which downloads no browser)
// against a broker on another origin, and prints one JSON line per case:
//   {"case": "...", "ok": true|false, "transport": "...", "steps": [...], "error": "..."}
// and a last line {"done": true}.
//
// Usage: node browser-conformance.mjs '<config JSON>' where the config has
//   chromium    the browser's path
//   broker      the broker's Bayeux URL (http://127.0.0.1:port/cometd)
//   allowedPage a page (browser/index.html) served from an origin the broker allows
//   deniedPage  the same page from an origin the broker does not allow
//   demo        the broker's demo page (http://<broker>/demo/), same origin as the broker
//   screenshot  optional: where to write a PNG of the demo page after the chat
//   only        optional: run only the cases whose name contains this
import puppeteer from "puppeteer-core";

const cfg = JSON.parse(process.argv[2]);
const stepMs = cfg.stepMs || 15000;

function emit(o) {
    process.stdout.write(JSON.stringify(o) + "\n");
}

// inPage runs one client over one transport, in the page: handshake,
// subscribe, publish, receive, wildcards, unsubscribe and disconnect, and the
// transport actually in use. Everything it needs is inside it: puppeteer
// sends its source to the page.
async function inPage({client, transport, url, stepMs}) {
    const steps = [];
    let used = "";
    const step = (name, fn) => {
        steps.push(name);
        return new Promise((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(name + ": timed out")), stepMs);
            new Promise(fn).then((v) => { clearTimeout(t); resolve(v); },
                (e) => { clearTimeout(t); reject(new Error(name + ": " + (e && e.message || JSON.stringify(e)))); });
        });
    };
    const mailbox = () => {
        const queue = [];
        const waiting = [];
        return {
            put(m) { const w = waiting.shift(); if (w) { w(m); } else { queue.push(m); } },
            next(name) { return step(name, (ok) => { const m = queue.shift(); if (m !== undefined) { ok(m); } else { waiting.push(ok); } }); },
            size() { return queue.length; },
        };
    };
    const check = (cond, what) => { if (!cond) throw new Error(what); };

    async function cometd() {
        const newClient = () => {
            const c = new window.CometD();
            for (const t of c.getTransportTypes()) {
                if (t !== transport) c.unregisterTransport(t);
            }
            check(c.getTransportTypes().length === 1, "transport " + transport + " not available");
            c.configure({url, logLevel: "warn", maxNetworkDelay: 5000});
            return c;
        };
        const expect = (ok, ko) => (reply) => reply.successful ? ok(reply) : ko(new Error(JSON.stringify(reply)));
        const sub = newClient();
        // Two CometD clients in one page cannot both use callback-polling:
        // each numbers its JSONP callbacks from 0 (_cometd_jsonp_<n>), so
        // their globals collide. A page has one client: it publishes to
        // itself then.
        const pub = transport === "callback-polling" ? sub : newClient();
        await step("handshake", (ok, ko) => sub.handshake(expect(ok, ko)));
        if (pub !== sub) await step("handshake publisher", (ok, ko) => pub.handshake(expect(ok, ko)));
        used = sub.getTransport().type;
        check(used === transport && pub.getTransport().type === transport, "negotiated " + used + " instead of " + transport);
        const room = mailbox(), wild = mailbox(), deep = mailbox();
        let roomSub;
        await step("subscribe /conf/room", (ok, ko) => { roomSub = sub.subscribe("/conf/room", (m) => room.put(m.data), expect(ok, ko)); });
        await step("subscribe /conf/wild/*", (ok, ko) => sub.subscribe("/conf/wild/*", (m) => wild.put(m.data), expect(ok, ko)));
        await step("subscribe /conf/deep/**", (ok, ko) => sub.subscribe("/conf/deep/**", (m) => deep.put(m.data), expect(ok, ko)));
        await step("publish /conf/room", (ok, ko) => pub.publish("/conf/room", {n: 1}, expect(ok, ko)));
        check((await room.next("receive /conf/room")).n === 1, "bad message on /conf/room");
        await step("publish /conf/wild/x", (ok, ko) => pub.publish("/conf/wild/x", {n: 2}, expect(ok, ko)));
        check((await wild.next("receive via /conf/wild/*")).n === 2, "bad message via /conf/wild/*");
        await step("publish /conf/deep/a/b", (ok, ko) => pub.publish("/conf/deep/a/b", {n: 3}, expect(ok, ko)));
        check((await deep.next("receive via /conf/deep/**")).n === 3, "bad message via /conf/deep/**");
        await step("unsubscribe /conf/room", (ok, ko) => sub.unsubscribe(roomSub, expect(ok, ko)));
        // Messages of one session arrive in order: when the second is in,
        // the first would have been.
        await step("publish after unsubscribe", (ok, ko) => pub.publish("/conf/room", {n: 4}, expect(ok, ko)));
        await step("publish /conf/wild/y", (ok, ko) => pub.publish("/conf/wild/y", {n: 5}, expect(ok, ko)));
        check((await wild.next("receive after unsubscribe")).n === 5, "bad message after unsubscribe");
        check(room.size() === 0, "received a message after unsubscribing");
        used = sub.getTransport().type;
        await step("disconnect subscriber", (ok, ko) => sub.disconnect(expect(ok, ko)));
        if (pub !== sub) await step("disconnect publisher", (ok, ko) => pub.disconnect(expect(ok, ko)));
    }

    async function faye() {
        // Faye picks its transport itself, from those not disabled, in its
        // order. Its handshake goes over a transport every server has
        // (long-polling, or callback-polling from another origin), so those
        // stay enabled; the one asked for comes first in Faye's order.
        const keep = [transport, "long-polling", "callback-polling"];
        const newClient = () => {
            const c = new window.Faye.Client(url, {timeout: 30, retry: 1});
            for (const t of ["websocket", "eventsource", "long-polling", "cross-origin-long-polling", "callback-polling"]) {
                if (!keep.includes(t)) c.disable(t);
            }
            const replies = mailbox();
            c.addExtension({incoming(m, cb) {
                if (m.channel === "/meta/handshake" || m.channel === "/meta/disconnect") replies.put(m);
                cb(m);
            }});
            c.replies = replies;
            return c;
        };
        const promise = (p) => (ok, ko) => p.then(ok, ko);
        const sub = newClient();
        const pub = newClient();
        await step("handshake", (ok) => sub.connect(ok));
        await step("handshake publisher", (ok) => pub.connect(ok));
        const hs = await sub.replies.next("handshake reply");
        check(hs.successful && hs.clientId, "handshake reply " + JSON.stringify(hs));
        const room = mailbox(), wild = mailbox(), deep = mailbox();
        const roomSub = sub.subscribe("/conf/room", (m) => room.put(m));
        await step("subscribe /conf/room", promise(roomSub));
        await step("subscribe /conf/wild/*", promise(sub.subscribe("/conf/wild/*", (m) => wild.put(m))));
        await step("subscribe /conf/deep/**", promise(sub.subscribe("/conf/deep/**", (m) => deep.put(m))));
        // Faye has settled on its transport by now: look at what it picked.
        used = sub._dispatcher.connectionType;
        check(used === transport, "Faye picked " + used + " instead of " + transport);
        await step("publish /conf/room", promise(pub.publish("/conf/room", {n: 1})));
        check((await room.next("receive /conf/room")).n === 1, "bad message on /conf/room");
        await step("publish /conf/wild/x", promise(pub.publish("/conf/wild/x", {n: 2})));
        check((await wild.next("receive via /conf/wild/*")).n === 2, "bad message via /conf/wild/*");
        await step("publish /conf/deep/a/b", promise(pub.publish("/conf/deep/a/b", {n: 3})));
        check((await deep.next("receive via /conf/deep/**")).n === 3, "bad message via /conf/deep/**");
        await step("unsubscribe /conf/room", promise(Promise.resolve(roomSub.cancel())));
        await step("publish after unsubscribe", promise(pub.publish("/conf/room", {n: 4})));
        await step("publish /conf/wild/y", promise(pub.publish("/conf/wild/y", {n: 5})));
        check((await wild.next("receive after unsubscribe")).n === 5, "bad message after unsubscribe");
        check(room.size() === 0, "received a message after unsubscribing");
        used = sub._dispatcher.connectionType;
        check(used === transport, "Faye moved to " + used + " during the case");
        sub.disconnect();
        const d = await sub.replies.next("disconnect subscriber");
        check(d.successful, "disconnect reply " + JSON.stringify(d));
        pub.disconnect();
        await pub.replies.next("handshake reply publisher");
        const d2 = await pub.replies.next("disconnect publisher");
        check(d2.successful, "disconnect reply " + JSON.stringify(d2));
    }

    try {
        await (client === "cometd" ? cometd() : faye());
        return {ok: true, transport: used, steps};
    } catch (e) {
        return {ok: false, transport: used, steps, error: String(e && e.message || e)};
    }
}

// refusedInPage tries one client over one transport from a page whose origin
// the broker does not allow, and reports whether it was refused: the CometD
// client reports a failed handshake; Faye, which retries for ever and reports
// nothing, must have had a request fail (a script or XMLHttpRequest error,
// or a websocket closed) with no handshake reply.
async function refusedInPage({client, transport, url, stepMs}) {
    const deadline = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
    if (client === "cometd") {
        const c = new window.CometD();
        for (const t of c.getTransportTypes()) {
            if (t !== transport) c.unregisterTransport(t);
        }
        c.configure({url, logLevel: "off", maxNetworkDelay: 3000});
        const reply = await Promise.race([
            new Promise((resolve) => c.handshake(resolve)),
            deadline(stepMs).then(() => ({timedOut: true})),
        ]);
        c.disconnect();
        return {refused: !reply.timedOut && !reply.successful, detail: JSON.stringify(reply).slice(0, 300)};
    }
    const keep = [transport, "long-polling", "callback-polling"];
    const c = new window.Faye.Client(url, {timeout: 5, retry: 0.2});
    for (const t of ["websocket", "eventsource", "long-polling", "cross-origin-long-polling", "callback-polling"]) {
        if (!keep.includes(t)) c.disable(t);
    }
    let sent = 0, replies = 0, failures = 0, failed;
    const failure = new Promise((resolve) => { failed = resolve; });
    // A script that does not load fires an error event, which does not
    // bubble but is seen while capturing.
    window.addEventListener("error", (e) => {
        if (e.target && e.target.tagName === "SCRIPT") { failures++; failed(); }
    }, true);
    const xhrSend = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.send = function (...a) {
        this.addEventListener("error", () => { failures++; failed(); });
        return xhrSend.apply(this, a);
    };
    c.addExtension({
        outgoing(m, cb) { if (m.channel === "/meta/handshake") sent++; cb(m); },
        incoming(m, cb) { if (m.channel === "/meta/handshake") replies++; cb(m); },
    });
    c.connect(() => {});
    await Promise.race([failure, deadline(stepMs)]);
    c.disconnect();
    return {refused: sent >= 1 && failures >= 1 && replies === 0, detail: `${sent} handshakes sent, ${failures} requests failed, ${replies} replies`};
}

// eventSourceInPage opens an EventSource stream for a session straight, as a
// page's own code could, and reports whether the browser let it open.
async function eventSourceInPage({url, clientId, stepMs}) {
    return await new Promise((resolve) => {
        const es = new EventSource(url + "/" + clientId);
        const t = setTimeout(() => { es.close(); resolve({opened: false, detail: "no open or error event"}); }, stepMs);
        es.onopen = () => { clearTimeout(t); es.close(); resolve({opened: true}); };
        es.onerror = () => { clearTimeout(t); const s = es.readyState; es.close(); resolve({opened: false, detail: "error, readyState " + s}); };
    });
}

// handshake makes a session from here (Node: no Origin), for the stream checks.
async function handshake() {
    const res = await fetch(cfg.broker, {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify([{channel: "/meta/handshake", version: "1.0", supportedConnectionTypes: ["long-polling"]}]),
    });
    const [reply] = await res.json();
    if (!reply.successful) throw new Error("handshake from node: " + JSON.stringify(reply));
    return reply.clientId;
}

const cases = [
    ["cometd", "websocket"], ["cometd", "long-polling"], ["cometd", "callback-polling"],
    ["faye", "websocket"], ["faye", "cross-origin-long-polling"], ["faye", "callback-polling"],
];

async function openPage(browser, url, errors) {
    const page = await browser.newPage();
    page.on("pageerror", (e) => errors.push(String(e && e.message || e)));
    await page.goto(url, {waitUntil: "load"});
    return page;
}

async function main() {
    const args = ["--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--no-default-browser-check", "--disable-extensions", "--window-size=1100,800"];
    if (process.getuid && process.getuid() === 0) {
        args.push("--no-sandbox"); // Chromium refuses to run its sandbox as root
    }
    const browser = await puppeteer.launch({executablePath: cfg.chromium, args, headless: true, protocolTimeout: 120000});
    const want = (name) => !cfg.only || name.includes(cfg.only);
    try {
        emit({browser: await browser.version()});
        for (const [client, transport] of cases) {
            const name = `${client}/${transport}`;
            if (!want(name)) continue;
            const errors = [];
            const page = await openPage(browser, cfg.allowedPage, errors);
            await page.waitForFunction(() => document.body.dataset.ready === "true" && window.Faye && window.CometD, {timeout: stepMs});
            const res = await page.evaluate(inPage, {client, transport, url: cfg.broker, stepMs});
            emit({case: name, page: cfg.allowedPage, ...res, pageErrors: errors});
            await page.close();
        }

        // Faye's eventsource transport sends its messages with a same-origin
        // XMLHttpRequest, so Faye uses it only on the broker's own origin:
        // the case runs in the demo page the broker serves.
        if (cfg.demo && want("faye/eventsource")) {
            const errors = [];
            const page = await openPage(browser, cfg.demo, errors);
            await page.waitForFunction(() => window.Faye, {timeout: stepMs});
            const res = await page.evaluate(inPage, {client: "faye", transport: "eventsource", url: cfg.broker.replace(/^https?:\/\/[^/]+/, new URL(cfg.demo).origin), stepMs});
            emit({case: "faye/eventsource", page: cfg.demo, ...res, pageErrors: errors});
            await page.close();
        }

        // CORS on the stream itself: the allowed page may open one, the
        // other may not.
        if (want("eventsource-cors")) {
            for (const [page, name, wantOpen] of [[cfg.allowedPage, "allowed", true], [cfg.deniedPage, "denied", false]]) {
                const clientId = await handshake();
                const p = await openPage(browser, page, []);
                const res = await p.evaluate(eventSourceInPage, {url: cfg.broker, clientId, stepMs});
                emit({case: `eventsource-cors/${name}`, ok: res.opened === wantOpen, transport: "eventsource", error: res.opened === wantOpen ? undefined : JSON.stringify(res)});
                await p.close();
            }
        }

        for (const [client, transport] of [...cases, ["faye", "eventsource"]]) {
            const name = `refused/${client}/${transport}`;
            if (!want(name)) continue;
            const errors = [];
            const page = await openPage(browser, cfg.deniedPage, errors);
            await page.waitForFunction(() => document.body.dataset.ready === "true" && window.Faye && window.CometD, {timeout: stepMs});
            const res = await page.evaluate(refusedInPage, {client, transport, url: cfg.broker, stepMs});
            emit({case: name, ok: res.refused, transport, error: res.refused ? undefined : "not refused: " + res.detail, detail: res.detail});
            await page.close();
        }

        if (cfg.demo && want("demo")) {
            emit(await demoChat(browser));
        }
    } finally {
        await browser.close();
    }
    emit({done: true});
}

// demoChat opens the demo page twice and has the two chat with each other.
async function demoChat(browser) {
    const steps = [];
    try {
        const errors = [];
        steps.push("open alice");
        const alice = await openPage(browser, cfg.demo + "?name=alice", errors);
        steps.push("open bob");
        const bob = await openPage(browser, cfg.demo + "?name=bob", errors);
        for (const p of [alice, bob]) {
            await p.waitForFunction(() => document.body.dataset.ready === "true" && document.body.dataset.rtt, {timeout: stepMs});
        }
        const say = async (from, to, text) => {
            steps.push(`${text}`);
            await from.bringToFront(); // keys go to the page in front
            await from.type("#text", text);
            await from.keyboard.press("Enter");
            await to.waitForFunction((t) => Array.from(document.querySelectorAll("#messages li")).some((li) => li.textContent.includes(t)), {timeout: stepMs}, text);
            await from.waitForFunction((t) => Array.from(document.querySelectorAll("#messages li.mine")).some((li) => li.textContent.includes(t)), {timeout: stepMs}, text);
        };
        await say(alice, bob, "hello from alice");
        await say(bob, alice, "hi alice, bob here");
        const transport = await bob.evaluate(() => document.body.dataset.transport);
        const rtt = await bob.evaluate(() => Number(document.body.dataset.rtt));
        if (!transport || transport === "-") throw new Error("no transport shown");
        if (!(rtt >= 0)) throw new Error("no round-trip time shown");
        if (cfg.screenshot) {
            steps.push("screenshot");
            await bob.waitForFunction(() => document.querySelectorAll("#messages li").length >= 2, {timeout: stepMs});
            await bob.screenshot({path: cfg.screenshot, fullPage: true});
        }
        await alice.close();
        await bob.close();
        if (errors.length) throw new Error("page errors: " + errors.join("; "));
        return {case: "demo/chat", ok: true, transport, rttMs: rtt, steps};
    } catch (e) {
        return {case: "demo/chat", ok: false, steps, error: String(e && e.message || e)};
    }
}

main().catch((e) => {
    emit({case: "runner", ok: false, error: String(e && e.stack || e)});
    process.exit(1);
});
