// Handshakes the CometD JavaScript client (long-polling) with a broker that is
// at its session cap, and prints one JSON line per /meta/handshake reply the
// client sees. It exits 0 once a handshake succeeds (after disconnecting), 1
// on its own deadline. Usage: node cometd-session-cap.mjs <url>
import {adapt} from "cometd-nodejs-client";
import {CometD} from "cometd";

const [url] = process.argv.slice(2);
adapt();

const cometd = new CometD();
for (const t of cometd.getTransportTypes()) {
    if (t !== "long-polling") {
        cometd.unregisterTransport(t);
    }
}
cometd.configure({url, logLevel: "warn", maxNetworkDelay: 5000});

const deadline = setTimeout(() => {
    process.stdout.write(JSON.stringify({event: "timeout"}) + "\n");
    process.exit(1);
}, 40000);

cometd.addListener("/meta/handshake", (m) => {
    process.stdout.write(JSON.stringify({
        event: "handshake", successful: m.successful, error: m.error,
        reconnect: m.advice && m.advice.reconnect, interval: m.advice && m.advice.interval,
    }) + "\n");
    if (m.successful) {
        cometd.disconnect(() => {
            clearTimeout(deadline);
            process.exit(0);
        });
    }
});
cometd.handshake();
