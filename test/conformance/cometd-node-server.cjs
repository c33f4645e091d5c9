// The CometD project's Node server (npm cometd-nodejs-server, long-polling
// only) as a Bayeux peer for side-by-side runs of cmd/bayeux-bench.
//
// Usage: node cometd-node-server.cjs [port] [timeoutMillis]
// Listens on 127.0.0.1 only (port 0 picks a free one), serves Bayeux under
// /cometd and prints one line to stdout: {"port": N}. It exits when stdin
// closes, unless COMETD_KEEP_STDIN=1 (for shell use).
'use strict';

const http = require('http');
const cometd = require('cometd-nodejs-server');

const port = parseInt(process.argv[2] || '0', 10);
const timeout = parseInt(process.argv[3] || '10000', 10);

const bayeux = cometd.createCometDServer({ timeout: timeout });
const server = http.createServer(bayeux.handle);

server.on('error', (err) => {
  process.stderr.write('cometd node server: ' + err.message + '\n');
  process.exit(2);
});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});

if (process.env.COMETD_KEEP_STDIN !== '1') {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
