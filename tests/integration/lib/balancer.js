'use strict';
// A load balancer in front of several gateway hosts, for the shared-store tests (issue 11): an HTTP server
// on a loopback port that sends each request to one of its hosts, round robin, or to the host a test pins
// (balancer.pin(i)), and records which host served what. A host set to null is down: its turn is skipped.
// Requests are forwarded as they came (method, target, headers, body) and answers streamed back; a host
// that cannot be reached gives 502 here, as a real balancer would.

const http = require('node:http');

class Balancer {
  constructor(ports) {
    this.ports = [...ports];
    this.turn = 0;
    this.pinned = null;
    this.served = []; // [{host, method, path, status}]
    this.server = http.createServer((req, res) => this.forward(req, res));
  }

  listen(port) {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => resolve(this.server.address().port));
    });
  }

  // Every request goes to host i until unpin().
  pin(i) {
    this.pinned = i;
  }

  unpin() {
    this.pinned = null;
  }

  pick() {
    if (this.pinned !== null) {
      return this.pinned;
    }
    for (let tries = 0; tries < this.ports.length; tries++) {
      const i = this.turn++ % this.ports.length;
      if (this.ports[i] !== null) {
        return i;
      }
    }
    return 0;
  }

  forward(req, res) {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => this.send(req, Buffer.concat(chunks), res, true));
  }

  // Sends one request to a host, on a connection of its own (no kept-alive connection a host may close
  // under a request). A host that refuses the connection (it went away; nothing was sent) is skipped:
  // the request goes once to the next host, as real balancers do; any other failure is a 502.
  send(req, body, res, retry) {
    const host = this.pick();
    const port = this.ports[host];
    const entry = { host, method: req.method, path: req.url, status: 0 };
    this.served.push(entry);
    if (port === null) {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('host down');
      entry.status = 502;
      return;
    }
    let answered = false;
    const up = http.request({
      host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers,
      agent: false,
    }, (answer) => {
      answered = true;
      entry.status = answer.statusCode;
      res.writeHead(answer.statusCode, answer.rawHeaders);
      answer.pipe(res);
    });
    up.on('error', (err) => {
      if (!answered && retry && err.code === 'ECONNREFUSED') {
        entry.status = 'retried';
        this.send(req, body, res, false);
        return;
      }
      entry.status = 502;
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
      }
      res.end('host unreachable');
    });
    up.end(body);
  }

  close(done) {
    this.server.closeAllConnections();
    this.server.close(() => done());
  }
}

module.exports = { Balancer };
