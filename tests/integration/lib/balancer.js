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
    this.agents = this.ports.map(() => new http.Agent({ keepAlive: true, maxSockets: 64 }));
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
    const up = http.request({
      host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers, agent: this.agents[host],
    }, (answer) => {
      entry.status = answer.statusCode;
      res.writeHead(answer.statusCode, answer.rawHeaders);
      answer.pipe(res);
    });
    up.on('error', () => {
      entry.status = 502;
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
      }
      res.end('host unreachable');
    });
    req.pipe(up);
  }

  close(done) {
    for (const agent of this.agents) {
      agent.destroy();
    }
    this.server.closeAllConnections();
    this.server.close(() => done());
  }
}

module.exports = { Balancer };
