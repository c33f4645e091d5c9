// The demo page: a chat room on /demo/chat and a round-trip probe on a
// channel of this page's own, through Faye's browser client.
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var endpoint = location.origin + document.body.dataset.mount;
  var params = new URLSearchParams(location.search);
  var want = params.get('transport') || '';
  var all = ['websocket', 'eventsource', 'long-polling', 'cross-origin-long-polling', 'callback-polling'];
  var token = function (n) {
    var a = new Uint8Array(n); crypto.getRandomValues(a);
    return Array.from(a, function (b) { return (b % 36).toString(36); }).join('');
  };

  var client = new Faye.Client(endpoint, { timeout: 60 });
  if (want) {
    // Faye picks the first usable of its transports: disable those before
    // the one asked for.
    for (var i = 0; i < all.length && all[i] !== want; i++) client.disable(all[i]);
  }
  $('transport-pick').value = want;
  $('pick').addEventListener('submit', function (e) {
    e.preventDefault();
    var p = new URLSearchParams(location.search);
    var v = $('transport-pick').value;
    if (v) p.set('transport', v); else p.delete('transport');
    location.search = p.toString();
  });

  var name = params.get('name') || 'guest-' + token(4);
  $('name').value = name;

  var state = function (s) { $('state').textContent = s; document.body.dataset.state = s; };
  var transport = function () {
    var d = client._dispatcher;
    var t = (d && d.connectionType) || '-';
    $('transport').textContent = t;
    document.body.dataset.transport = t;
    $('client-id').textContent = (d && d.clientId) || '-';
  };
  client.on('transport:up', function () { state('connected'); transport(); });
  client.on('transport:down', function () { state('reconnecting'); });

  var show = function (m, mine) {
    if (!m || typeof m.text !== 'string') return;
    var li = document.createElement('li');
    if (mine) li.className = 'mine';
    var who = document.createElement('span');
    who.className = 'who';
    who.textContent = String(m.name || '?').slice(0, 32);
    li.appendChild(who);
    li.appendChild(document.createTextNode(m.text.slice(0, 500)));
    $('messages').appendChild(li);
    $('messages').scrollTop = $('messages').scrollHeight;
  };
  var me = token(8);
  var chat = client.subscribe('/demo/chat', function (m) { show(m, m && m.from === me); });
  chat.then(function () { state('connected'); transport(); document.body.dataset.ready = 'true'; });

  $('say').addEventListener('submit', function (e) {
    e.preventDefault();
    var text = $('text').value.trim();
    if (!text) return;
    name = $('name').value.trim() || name;
    client.publish('/demo/chat', { name: name, text: text, from: me });
    $('text').value = '';
  });

  // Round trip: publish to a channel only this page listens on and time the
  // message's return through the broker.
  var samples = [];
  var probe = '/demo/rtt/' + token(12);
  var sent = {};
  var seq = 0;
  client.subscribe(probe, function (m) {
    var t0 = sent[m.seq];
    if (t0 === undefined) return;
    delete sent[m.seq];
    var rtt = performance.now() - t0;
    samples.push(rtt);
    if (samples.length > 20) samples.shift();
    var sorted = samples.slice().sort(function (a, b) { return a - b; });
    $('rtt').textContent = rtt.toFixed(1) + ' ms';
    $('rtt-median').textContent = sorted[Math.floor(sorted.length / 2)].toFixed(1) + ' ms';
    document.body.dataset.rtt = rtt.toFixed(1);
    transport();
  }).then(function () {
    var tick = function () {
      seq++;
      sent[seq] = performance.now();
      client.publish(probe, { seq: seq });
      for (var k in sent) if (k < seq - 20) delete sent[k];
    };
    tick();
    setInterval(tick, 1000);
  });
  window.demoClient = client;
})();
