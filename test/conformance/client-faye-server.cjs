// Faye's Node server as a Bayeux peer for broker/client tests and for
// side-by-side runs of cmd/bayeux-bench.
//
// Usage: node client-faye-server.cjs [port] [connectTimeoutSeconds] [maxLifetimeSeconds]
// Listens on 127.0.0.1 only (port 0 picks a free one), mounts Faye at /faye
// and prints one line to stdout: {"port": N}. It exits when stdin closes (so
// it never outlives the Go test that started it; FAYE_KEEP_STDIN=1 turns
// this off for shell use) or after maxLifetime.
'use strict';

const http = require('http');
const faye = require('faye');

const port = parseInt(process.argv[2] || '0', 10);
const timeout = parseFloat(process.argv[3] || '10');
const lifetime = parseFloat(process.argv[4] || '600');

const bayeux = new faye.NodeAdapter({ mount: '/faye', timeout: timeout });
const server = http.createServer();
bayeux.attach(server);

server.on('error', (err) => {
  process.stderr.write('faye server: ' + err.message + '\n');
  process.exit(2);
});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});

if (process.env.FAYE_KEEP_STDIN !== '1') {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
setTimeout(() => process.exit(0), lifetime * 1000).unref();
