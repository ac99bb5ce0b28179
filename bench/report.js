'use strict';
// The report of a bench/run: reads RESULTS/raw/*.json, prints issue 12's targets first (each figure,
// its peer's, their ratio, the threshold and "met", "missed" or "not measured"), then each scenario's
// figures with their ratios to the peers (and issue 6's older targets that still mean something),
// writes RESULTS/summary.txt and RESULTS/summary.json, and draws the latency distributions as PNG
// (gnuplot). Usage: node bench/report.js RESULTS_DIR
// Results of older runs (before the "auth": "none" measurement, or of some scenarios only) are read
// too: what they lack is "not measured".

const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: node bench/report.js RESULTS_DIR\n');
  process.exit(2);
}
const raw = path.join(dir, 'raw');
const run = JSON.parse(fs.readFileSync(path.join(raw, 'run.json'), 'utf8'));
const files = fs.readdirSync(raw).filter((f) => f.endsWith('.json') && f !== 'run.json');
const read = (f) => JSON.parse(fs.readFileSync(path.join(raw, f), 'utf8'));

const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const mean = (xs) => (xs.length ? sum(xs) / xs.length : NaN);
const fmt = (x, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
const out = [];
const say = (line = '') => out.push(line);
// targets: issue 12's (the table that opens the summary); issue6_targets: the older targets of issue 6
// that issue 12 did not replace, kept for comparison.
const summary = {
  run, wrk: {}, public: null, logins: {}, inflight: null, workers: null, cluster: null, targets: [], issue6_targets: [],
};

const compare = (value, op, bound) => Number.isFinite(value) && ({
  '<=': value <= bound, '<': value < bound, '>=': value >= bound, '==': value === bound,
})[op];
// By how much a missed bound is missed, as text.
function missBy(value, op, bound) {
  if (!Number.isFinite(value) || compare(value, op, bound)) {
    return '';
  }
  if (bound === 0) {
    return ` (${value})`;
  }
  return op === '>=' ? ` (short by ${fmt((1 - value / bound) * 100, 0)}%)` : ` (over by ${fmt((value / bound - 1) * 100, 0)}%)`;
}

// One of issue 6's older targets: records it and says whether it is met, and by how much it is missed.
function target(name, value, op, bound, unit = '') {
  const met = compare(value, op, bound);
  summary.issue6_targets.push({ issue: 6, name, value, op, bound, unit, met });
  return `${name}: ${Number.isInteger(value) ? value : fmt(value)}${unit}  issue 6 target ${op} ${bound}${unit}: ${met ? 'met' : `MISSED${missBy(value, op, bound)}`}`;
}

// ---- 1. authenticated requests (wrk) ----
function wrkAggregate(entries) {
  const w = entries.map((e) => e.wrk);
  const requests = sum(w.map((x) => x.requests));
  const errors = sum(w.map((x) => Object.values(x.errors).reduce((a, b) => a + b, 0)));
  return {
    rounds: entries.length,
    requests_per_s: mean(w.map((x) => x.requests_per_s)),
    p50_ms: mean(w.map((x) => x.p50_ms)),
    p90_ms: mean(w.map((x) => x.p90_ms)),
    p99_ms: mean(w.map((x) => x.p99_ms)),
    max_ms: Math.max(...w.map((x) => x.max_ms)),
    errors,
    cpu_us_per_request: requests ? (sum(entries.map((e) => e.cpu_s)) / requests) * 1e6 : NaN,
    // Each round's own figure (see ROUND_SPREAD).
    cpu_us_per_request_rounds: entries.map((e, i) => (w[i].requests ? (e.cpu_s / w[i].requests) * 1e6 : NaN)),
    // ssogate's work in each round beside the requests (older runs did not record it).
    assertions_signed_rounds: entries.map((e) => e.assertions_signed),
    session_writes_rounds: entries.map((e) => e.session_writes),
    // Cores the target kept busy: below 1 for a one-process target means it waited on the others.
    cores: sum(entries.map((e) => e.cpu_s)) / sum(w.map((x) => x.seconds)),
    bytes_per_request: requests ? sum(w.map((x) => x.bytes)) / requests : NaN,
    // VmHWM of the target's processes after its last run (older runs did not record it).
    peak_rss_mib: entries.some((e) => e.peak_rss_kib !== undefined) ? Math.max(...entries.map((e) => e.peak_rss_kib ?? 0)) / 1024 : undefined,
    percentiles: w[0].percentiles,
  };
}

function group(regex) {
  const groups = {};
  for (const f of files) {
    const m = regex.exec(f);
    if (m) {
      const key = m.slice(1, -1).join('/');
      (groups[key] = groups[key] || []).push(read(f));
    }
  }
  return groups;
}

const wrkGroups = group(/^wrk-(\d+)-(\w+)-(\d+)\.json$/);
const levels = [...new Set(Object.keys(wrkGroups).map((k) => Number(k.split('/')[0])))].sort((a, b) => a - b);
const sessionGroups = group(/^sessions-(\d+)-(\w+)-(\d+)\.json$/);
for (const level of levels) {
  const result = {};
  // ssogatesmall: the small level's gateway, measured again in the large level's rounds.
  for (const t of ['ssogate', 'apache', 'nginx', 'ssogatesmall']) {
    if (wrkGroups[`${level}/${t}`]) {
      result[t] = wrkAggregate(wrkGroups[`${level}/${t}`]);
      const made = sessionGroups[`${level}/${t}`];
      if (made) {
        result[t].sessions_held = sum(made.map((e) => e.load.flows.ok));
        result[t].session_login_failures = sum(made.map((e) => e.load.flows.failed));
        result[t].login_cpu_ms = (sum(made.map((e) => e.cpu_s)) / Math.max(1, result[t].sessions_held)) * 1000;
      }
      if (t === 'ssogatesmall') result[t].sessions_held = summary.wrk[levels[0]]?.ssogate?.sessions_held;
      // A redirect to the login instead of the page would be far fewer bytes than the page.
      result[t].suspect = result[t].bytes_per_request < run.options.body_bytes;
    }
  }
  summary.wrk[level] = result;
  say(`1. Authenticated requests: wrk -t2 -c64 -d${run.options.duration_s}s, ${run.options.body_bytes}-byte page, each request a different session; ${level} sessions held`);
  say('   target       sessions     req/s   p50 ms   p90 ms   p99 ms   max ms  CPU us/req  cores  errors');
  for (const [t, r] of Object.entries(result)) {
    say(`   ${t.padEnd(12)} ${String(r.sessions_held ?? '-').padStart(8)} ${fmt(r.requests_per_s, 0).padStart(9)} ${fmt(r.p50_ms).padStart(8)} ${fmt(r.p90_ms).padStart(8)} ${fmt(r.p99_ms).padStart(8)} ${fmt(r.max_ms).padStart(8)} ${fmt(r.cpu_us_per_request, 1).padStart(11)} ${fmt(r.cores).padStart(6)} ${String(r.errors).padStart(7)}${r.suspect ? '  SUSPECT: responses smaller than the page (not authenticated?)' : ''}`);
  }
  const s = result.ssogate;
  if (s && result.nginx) {
    say(`   ${target(`ssogate/nginx req/s (${level} sessions)`, s.requests_per_s / result.nginx.requests_per_s, '>=', 0.8, 'x')}`);
    say(`   CPU per request ssogate/nginx: ${fmt(s.cpu_us_per_request / result.nginx.cpu_us_per_request)}x (issue 12: <= 1.25x, in the targets above)`);
  }
  if (s && result.apache) {
    say(`   ssogate/mod_auth_openidc req/s: ${fmt(s.requests_per_s / result.apache.requests_per_s)}x; CPU per request mod_auth_openidc/ssogate: ${fmt(result.apache.cpu_us_per_request / s.cpu_us_per_request)}x`);
  }
  say();
}
if (levels.length >= 2) {
  const large = summary.wrk[levels[levels.length - 1]].ssogate;
  const beside = summary.wrk[levels[levels.length - 1]].ssogatesmall;
  const small = beside ?? summary.wrk[levels[0]].ssogate;
  if (small && large) {
    say(`   ssogate CPU per request, ${levels[levels.length - 1]} sessions / ${levels[0]}${beside ? ' (the same rounds)' : ''}: ${fmt(large.cpu_us_per_request / small.cpu_us_per_request)}x (issue 12: <= 1.1x, in the targets above)`);
    say(`   ssogate req/s, ${levels[levels.length - 1]} sessions / ${levels[0]}: ${fmt(large.requests_per_s / small.requests_per_s)}x`);
    // Round by round: a round that signed every session's assertion again (more than ttl_s / 2
    // since that session's last request) pays for all of them at once.
    const rounds = (r, held) =>
      r.cpu_us_per_request_rounds
        .map((cpu, i) => `round ${i + 1} ${fmt(cpu, 1)} us/req, ${r.assertions_signed_rounds[i] ?? '?'} assertions signed, ${r.session_writes_rounds[i] ?? '?'} session writes`)
        .join('; ') + ` (${held} sessions)`;
    say(`   by round: ${levels[levels.length - 1]} sessions: ${rounds(large, large.sessions_held)}`);
    say(`             ${levels[0]} sessions: ${rounds(small, small.sessions_held)}`);
    const a0 = summary.wrk[levels[0]].apache;
    const a1 = summary.wrk[levels[levels.length - 1]].apache;
    if (a0 && a1) {
      say(`   mod_auth_openidc CPU per request, ${levels[levels.length - 1]} sessions / ${levels[0]}: ${fmt(a1.cpu_us_per_request / a0.cpu_us_per_request)}x`);
    }
    say();
  }
}

// ---- 1b. an "auth": "none" route (issue 12), no cookie ----
const publicGroups = group(/^public-(\w+)-(\d+)\.json$/);
if (Object.keys(publicGroups).length) {
  const result = {};
  for (const t of ['ssogate', 'nginx']) {
    if (publicGroups[t]) {
      result[t] = wrkAggregate(publicGroups[t]);
      result[t].path = publicGroups[t][0].path;
      result[t].suspect = result[t].bytes_per_request < run.options.body_bytes;
    }
  }
  summary.public = result;
  const where = result.ssogate?.path ?? result.nginx?.path ?? '/public/index.html';
  say(`1b. An "auth": "none" route: wrk -t2 -c64 -d${run.options.duration_s}s on ${where}, no cookie, the same ${run.options.body_bytes}-byte page`);
  say('   target       req/s   p50 ms   p90 ms   p99 ms   max ms  CPU us/req  cores  errors');
  for (const [t, r] of Object.entries(result)) {
    say(`   ${t.padEnd(9)} ${fmt(r.requests_per_s, 0).padStart(9)} ${fmt(r.p50_ms).padStart(8)} ${fmt(r.p90_ms).padStart(8)} ${fmt(r.p99_ms).padStart(8)} ${fmt(r.max_ms).padStart(8)} ${fmt(r.cpu_us_per_request, 1).padStart(11)} ${fmt(r.cores).padStart(6)} ${String(r.errors).padStart(7)}${r.suspect ? '  SUSPECT: responses smaller than the page' : ''}`);
  }
  if (result.ssogate && result.nginx) {
    say(`   ssogate/nginx: req/s ${fmt(result.ssogate.requests_per_s / result.nginx.requests_per_s)}x, CPU per request ${fmt(result.ssogate.cpu_us_per_request / result.nginx.cpu_us_per_request)}x (issue 12: <= 1.1x, in the targets above)`);
  }
  say();
}

// ---- 2. logins ----
const loginGroups = group(/^logins-(\w+)-(\d+)\.json$/);
if (Object.keys(loginGroups).length) {
  say(`2. Logins: the same flows through each gateway (concurrency ${run.options.concurrency}), same IdP`);
  say('   gateway   logins  failed  logins/s  login p50 ms  login p99 ms  callback p50 ms  CPU ms/login');
  for (const [g, entries] of Object.entries(loginGroups)) {
    const ok = sum(entries.map((e) => e.load.flows.ok));
    const r = {
      logins: ok,
      failed: sum(entries.map((e) => e.load.flows.failed)),
      logins_per_s: mean(entries.map((e) => e.load.logins_per_s)),
      login_p50_ms: mean(entries.map((e) => e.load.hops.login?.p50_ms ?? NaN)),
      login_p99_ms: mean(entries.map((e) => e.load.hops.login?.p99_ms ?? NaN)),
      callback_p50_ms: mean(entries.map((e) => e.load.hops.callback?.p50_ms ?? NaN)),
      cpu_ms_per_login: ok ? (sum(entries.map((e) => e.cpu_s)) / ok) * 1000 : NaN,
      errors: entries.reduce((acc, e) => ({ ...acc, ...e.load.errors }), {}),
      hops: entries[0].load.hops,
    };
    summary.logins[g] = r;
    say(`   ${g.padEnd(9)} ${String(r.logins).padStart(6)} ${String(r.failed).padStart(7)} ${fmt(r.logins_per_s, 1).padStart(9)} ${fmt(r.login_p50_ms).padStart(13)} ${fmt(r.login_p99_ms).padStart(13)} ${fmt(r.callback_p50_ms).padStart(16)} ${fmt(r.cpu_ms_per_login, 3).padStart(13)}`);
  }
  const s = summary.logins.ssogate;
  const a = summary.logins.apache;
  if (s) {
    say(`   (CPU seconds per 1,000 logins: ssogate ${fmt(s.cpu_ms_per_login)}${a ? `, mod_auth_openidc ${fmt(a.cpu_ms_per_login)}` : ''}; issue 12: ssogate <= 0.25 ms, in the targets above)`);
  }
  if (s && a) {
    say(`   CPU per login mod_auth_openidc/ssogate: ${fmt(a.cpu_ms_per_login / s.cpu_ms_per_login)}x (issue 12: >= 8x, in the targets above)`);
    say(`   logins/s ssogate/mod_auth_openidc: ${fmt(s.logins_per_s / a.logins_per_s)}x (the same IdP, one node process, serves both)`);
  }
  for (const level of levels) {
    const r = summary.wrk[level];
    if (r.ssogate?.login_cpu_ms !== undefined && r.apache?.login_cpu_ms !== undefined && level > 1000) {
      say(`   while logging ${level} sessions in: CPU ms/login ssogate ${fmt(r.ssogate.login_cpu_ms, 3)}, mod_auth_openidc ${fmt(r.apache.login_cpu_ms, 3)}`);
    }
  }
  say();
}

// ---- 3. logins in flight ----
if (files.includes('inflight.json')) {
  const l = read('inflight.json');
  const extra = files.includes('inflight-ssogate.json') ? read('inflight-ssogate.json') : {};
  const r = {
    flows: l.load.flows,
    errors_total: l.load.errors_total,
    errors: l.load.errors,
    cpu_s: l.cpu_s,
    peak_rss_mib: (extra.peak_rss_kib ?? NaN) / 1024,
    healthz_p50_ms: l.load.hops.probe?.p50_ms ?? NaN,
    healthz_p99_ms: l.load.hops.probe?.p99_ms ?? NaN,
    healthz_max_ms: l.load.hops.probe?.max_ms ?? NaN,
    login_p50_ms: l.load.hops.login?.p50_ms ?? NaN,
    login_p99_ms: l.load.hops.login?.p99_ms ?? NaN,
    callback_p99_ms: l.load.hops.callback?.p99_ms ?? NaN,
    logins_by_result: extra.logins_by_result,
  };
  summary.inflight = r;
  r.in_flight_max = l.load.flows.in_flight_max;
  say(`3. Logins in flight, IdP token answers delayed by 1 s (ssogate): at most ${r.in_flight_max} at once`);
  say(`   (flows started at ${l.load.options.rate}/s, ${l.load.options.think_ms / 1000} s per IdP form)`);
  say(`   flows ${r.flows.started} started, ${r.flows.ok} ok, ${r.flows.failed} failed; login p50 ${fmt(r.login_p50_ms)} ms, p99 ${fmt(r.login_p99_ms)} ms; ssogate CPU ${fmt(r.cpu_s)} s`);
  say(`   errors: ${Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
  if (r.logins_by_result) {
    say(`   ssogate_logins_total: ${Object.entries(r.logins_by_result).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  }
  say(`   /_sso/healthz meanwhile: p50 ${fmt(r.healthz_p50_ms)} ms, p99 ${fmt(r.healthz_p99_ms)} ms, max ${fmt(r.healthz_max_ms)} ms`);
  say(`   ssogate peak RSS: ${fmt(r.peak_rss_mib, 1)} MiB`);
  // Errors on the IdP's own pages (idp_*) are the test IdP giving way, not the gateway.
  const gatewayErrors = sum(Object.entries(r.errors).filter(([k]) => !k.startsWith('idp_')).map(([, v]) => v));
  r.gateway_errors = gatewayErrors;
  r.idp_errors = r.errors_total - gatewayErrors;
  say(`   errors at the gateway (redirect, callback, first page, healthz): ${gatewayErrors}`);
  if (r.idp_errors > 0) {
    say(`   (and ${r.idp_errors} failures on the test IdP's own pages: the IdP giving way)`);
  }
  say('   (issue 12: 0 errors at the gateway, peak RSS < 256 MiB, healthz p99 < 20 ms: in the targets above)');
  say();
}

// ---- 4. workers ----
const workerGroups = group(/^workers-(\d+)-(\d+)\.json$/);
if (workerGroups['1'] && workerGroups['2']) {
  const one = wrkAggregate(workerGroups['1']);
  const two = wrkAggregate(workerGroups['2']);
  summary.workers = { 1: one, 2: two };
  say('4. ssogate workers (wrk -t2 -c64, 100 sessions held)');
  say('   workers     req/s   p50 ms   p99 ms  CPU us/req  cores  errors');
  for (const [n, r] of [['1', one], ['2', two]]) {
    say(`   ${n.padEnd(7)} ${fmt(r.requests_per_s, 0).padStart(9)} ${fmt(r.p50_ms).padStart(8)} ${fmt(r.p99_ms).padStart(8)} ${fmt(r.cpu_us_per_request, 1).padStart(11)} ${fmt(r.cores).padStart(6)} ${String(r.errors).padStart(7)}${r.suspect ? '  SUSPECT' : ''}`);
  }
  say(`   ${target('two workers / one, req/s', two.requests_per_s / one.requests_per_s, '>=', 1.6, 'x')}`);
  say(`   (cores: what ssogate kept busy; wrk and the upstream nginx share the same ${run.machine.cpus} cores)`);
  say();
}

// ---- 5. several hosts on one PostgreSQL (issue 11) ----
const CLUSTER = {
  lmdb: { hosts: 1, store: 'lmdb', name: '1 host, LMDB' },
  pg1: { hosts: 1, store: 'postgresql', name: '1 host, PostgreSQL' },
  pg2: { hosts: 2, store: 'postgresql', name: '2 hosts, PostgreSQL' },
};
const clusterLogins = group(/^cluster-logins-(\w+)-(\d+)\.json$/);
const clusterWrk = group(/^cluster-wrk-(\w+)-(\d+)\.json$/);
if (Object.keys(clusterLogins).length || Object.keys(clusterWrk).length) {
  summary.cluster = {};
  // CPU seconds of entries' field per operation, in unit (1e3: ms, 1e6: us).
  const per = (entries, field, ops, unit) => (ops ? (sum(entries.map((e) => e[field] ?? NaN)) / ops) * unit : NaN);
  for (const [t, about] of Object.entries(CLUSTER)) {
    const r = { ...about };
    const logins = clusterLogins[t];
    if (logins) {
      const ok = sum(logins.map((e) => e.load.flows.ok));
      r.logins = {
        logins: ok,
        failed: sum(logins.map((e) => e.load.flows.failed)),
        logins_per_s: mean(logins.map((e) => e.load.logins_per_s)),
        login_p50_ms: mean(logins.map((e) => e.load.hops.login?.p50_ms ?? NaN)),
        login_p99_ms: mean(logins.map((e) => e.load.hops.login?.p99_ms ?? NaN)),
        callback_p50_ms: mean(logins.map((e) => e.load.hops.callback?.p50_ms ?? NaN)),
        cpu_ms_per_login: per(logins, 'cpu_s', ok, 1e3),
        postgres_cpu_ms_per_login: per(logins, 'postgres_cpu_s', ok, 1e3),
        balancer_cpu_ms_per_login: per(logins, 'balancer_cpu_s', ok, 1e3),
        errors: logins.reduce((acc, e) => ({ ...acc, ...e.load.errors }), {}),
        hops: logins[0].load.hops,
      };
    }
    const wrk = clusterWrk[t];
    if (wrk) {
      const a = wrkAggregate(wrk);
      const requests = sum(wrk.map((e) => e.wrk.requests));
      a.sessions = wrk[0].sessions_file_lines;
      a.postgres_cpu_us_per_request = per(wrk, 'postgres_cpu_s', requests, 1e6);
      a.balancer_cpu_us_per_request = per(wrk, 'balancer_cpu_s', requests, 1e6);
      a.suspect = a.bytes_per_request < run.options.body_bytes;
      r.requests = a;
    }
    if (r.logins || r.requests) {
      summary.cluster[t] = r;
    }
  }
  const c = summary.cluster;
  say(`5. Several gateway hosts on one PostgreSQL: each target behind its own nginx round-robin balancer; CPU of the hosts (both for two), PostgreSQL's (postmaster and backends) and the balancer's apart`);
  say(`   Logins: ${run.options.logins} through each target (concurrency ${run.options.concurrency}), in turns`);
  say('   target                logins  failed  logins/s  login p50 ms  login p99 ms  CPU ms/login  PG ms/login  LB ms/login');
  for (const [t, r] of Object.entries(c)) {
    const l = r.logins;
    if (l) {
      say(`   ${r.name.padEnd(20)} ${String(l.logins).padStart(7)} ${String(l.failed).padStart(7)} ${fmt(l.logins_per_s, 1).padStart(9)} ${fmt(l.login_p50_ms).padStart(13)} ${fmt(l.login_p99_ms).padStart(13)} ${fmt(l.cpu_ms_per_login, 3).padStart(13)} ${fmt(l.postgres_cpu_ms_per_login, 3).padStart(12)} ${fmt(l.balancer_cpu_ms_per_login, 3).padStart(12)}`);
    }
  }
  say(`   Authenticated requests: wrk -t2 -c64 -d${run.options.duration_s}s through the balancer, each request the next session of those logins`);
  say('   target               sessions     req/s   p50 ms   p99 ms   max ms  CPU us/req  PG us/req  LB us/req  errors');
  for (const [t, r] of Object.entries(c)) {
    const w = r.requests;
    if (w) {
      say(`   ${r.name.padEnd(20)} ${String(w.sessions).padStart(8)} ${fmt(w.requests_per_s, 0).padStart(9)} ${fmt(w.p50_ms).padStart(8)} ${fmt(w.p99_ms).padStart(8)} ${fmt(w.max_ms).padStart(8)} ${fmt(w.cpu_us_per_request, 1).padStart(11)} ${fmt(w.postgres_cpu_us_per_request, 1).padStart(10)} ${fmt(w.balancer_cpu_us_per_request, 1).padStart(10)} ${String(w.errors).padStart(7)}${w.suspect ? '  SUSPECT: responses smaller than the page (not authenticated?)' : ''}`);
    }
  }
  const total = (l) => l.cpu_ms_per_login + l.postgres_cpu_ms_per_login;
  if (c.lmdb?.logins && c.pg1?.logins) {
    say(`   CPU per login, host on PostgreSQL / host on LMDB: ${fmt(c.pg1.logins.cpu_ms_per_login / c.lmdb.logins.cpu_ms_per_login)}x; with PostgreSQL's own: ${fmt(total(c.pg1.logins) / c.lmdb.logins.cpu_ms_per_login)}x`);
  }
  if (c.pg1?.logins && c.pg2?.logins) {
    say(`   two hosts / one on PostgreSQL: logins/s ${fmt(c.pg2.logins.logins_per_s / c.pg1.logins.logins_per_s)}x, CPU per login (hosts) ${fmt(c.pg2.logins.cpu_ms_per_login / c.pg1.logins.cpu_ms_per_login)}x`);
  }
  if (c.lmdb?.requests && c.pg1?.requests) {
    say(`   req/s, host on PostgreSQL / host on LMDB: ${fmt(c.pg1.requests.requests_per_s / c.lmdb.requests.requests_per_s)}x; CPU per request ${fmt(c.pg1.requests.cpu_us_per_request / c.lmdb.requests.cpu_us_per_request)}x`);
  }
  if (c.pg1?.requests && c.pg2?.requests) {
    say(`   req/s, two hosts / one on PostgreSQL: ${fmt(c.pg2.requests.requests_per_s / c.pg1.requests.requests_per_s)}x (every process shares the same ${run.machine.cpus} cores); CPU per request ${fmt(c.pg2.requests.cpu_us_per_request / c.pg1.requests.cpu_us_per_request)}x`);
  }
  say(`   (PostgreSQL ${run.versions.postgresql ?? ''}, the test server of tests/integration/lib/pg.js: fsync, synchronous_commit and full_page_writes off; store pool_size ${run.options.pg_pool_size}, cache_ttl_s ${run.options.pg_cache_ttl_s})`);
  say();
}

const m = run.machine;
say(`Machine: ${m.cpus} cores (${m.model}), ${m.memory_mib} MiB, Linux ${m.kernel}; nginx ${run.versions.nginx}, ${run.versions.apache}, mod_auth_openidc ${run.versions.mod_auth_openidc}, wrk ${run.versions.wrk}; commit ${run.commit}`);
if (summary.issue6_targets.length) {
  const missed6 = summary.issue6_targets.filter((t) => !t.met);
  say(`Issue 6's older targets (not issue 12's): ${summary.issue6_targets.length - missed6.length} met, ${missed6.length} missed${missed6.length ? `: ${missed6.map((t) => t.name).join('; ')}` : ''}`);
}

// ---- issue 12's targets: the table that opens the summary ----
// goal(...): one target. value: ssogate's figure; peer: [name, figure] or null; ratio: what is compared
// with the bound when the target is a ratio (null when the figure itself is); notes: how the run differs
// from the issue's setting (fewer sessions, fewer logins in flight). A figure that is missing (the
// scenario did not run, or an older run lacks it) is "not measured", never met.
function goal(id, name, { value, unit, digits = 2, peer = null, ratio = null, op, bound, boundUnit, note = '' }) {
  const compared = ratio === null ? value : ratio;
  const measured = Number.isFinite(value) && (ratio === null || Number.isFinite(ratio));
  const met = measured && compare(compared, op, bound);
  const status = !measured ? 'not measured' : met ? 'met' : 'missed';
  summary.targets.push({
    issue: 12, id, name, value: measured ? value : null, unit, peer: peer ? peer[0] : null,
    peer_value: peer && Number.isFinite(peer[1]) ? peer[1] : null, ratio: measured && ratio !== null ? ratio : null,
    op, bound, bound_unit: boundUnit, status, met, note: note || undefined,
  });
  return {
    id, name,
    value: measured ? `${fmt(value, digits)} ${unit}`.trim() : '-',
    peer: peer && Number.isFinite(peer[1]) ? `${peer[0]} ${fmt(peer[1], digits)} ${unit}` : '-',
    ratio: measured && ratio !== null ? `${fmt(ratio)}x` : '-',
    threshold: `${op === '==' ? '=' : op} ${bound}${boundUnit}`,
    status: `${status === 'missed' ? `missed${missBy(compared, op, bound)}` : status}${note && measured ? ', see note' : ''}`,
    note,
  };
}
const rows = [];
const smallLevel = levels[0];
const largeLevel = levels.length >= 2 ? levels[levels.length - 1] : undefined;
const w0 = smallLevel !== undefined ? summary.wrk[smallLevel] : {};
const w1 = largeLevel !== undefined ? summary.wrk[largeLevel] : {};
const cpu = (r) => r?.cpu_us_per_request ?? NaN;
const ratioOf = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN);
const sessionsNote = (level) => (level !== undefined && level !== 20000 ? `${level} sessions held (--sessions), not the issue's 20,000` : '');
rows.push(goal('auth_cpu_100', `authenticated request CPU/req, ${smallLevel ?? 100} sessions, ssogate/nginx`, {
  value: cpu(w0.ssogate), unit: 'us', digits: 1, peer: ['nginx', cpu(w0.nginx)],
  ratio: ratioOf(cpu(w0.ssogate), cpu(w0.nginx)), op: '<=', bound: 1.25, boundUnit: 'x',
}));
rows.push(goal('auth_cpu_20000', `authenticated request CPU/req, ${largeLevel ?? 20000} sessions, ssogate/nginx`, {
  value: cpu(w1.ssogate), unit: 'us', digits: 1, peer: ['nginx', cpu(w1.nginx)],
  ratio: ratioOf(cpu(w1.ssogate), cpu(w1.nginx)), op: '<=', bound: 1.25, boundUnit: 'x', note: sessionsNote(largeLevel),
}));
const pub = summary.public ?? {};
rows.push(goal('none_cpu', '"auth": "none" request CPU/req, ssogate/nginx', {
  value: cpu(pub.ssogate), unit: 'us', digits: 1, peer: ['nginx', cpu(pub.nginx)],
  ratio: ratioOf(cpu(pub.ssogate), cpu(pub.nginx)), op: '<=', bound: 1.1, boundUnit: 'x',
}));
// Against the small level's gateway in the same rounds where it ran beside (older runs: its own rounds).
const smallPeer = w1.ssogatesmall ?? w0.ssogate;
rows.push(goal('sessions_cpu', `ssogate CPU/req, ${largeLevel ?? 20000} sessions / ${smallLevel ?? 100}`, {
  value: cpu(w1.ssogate), unit: 'us', digits: 1, peer: [`ssogate@${smallLevel ?? 100}`, cpu(smallPeer)],
  ratio: ratioOf(cpu(w1.ssogate), cpu(smallPeer)), op: '<=', bound: 1.1, boundUnit: 'x', note: sessionsNote(largeLevel),
}));
const ls = summary.logins.ssogate;
const la = summary.logins.apache;
rows.push(goal('login_cpu', 'login: ssogate CPU/login', {
  value: ls?.cpu_ms_per_login ?? NaN, unit: 'ms', digits: 3, peer: ['mod_auth_openidc', la?.cpu_ms_per_login ?? NaN],
  op: '<=', bound: 0.25, boundUnit: ' ms',
}));
rows.push(goal('login_vs_apache', 'login: CPU/login mod_auth_openidc/ssogate', {
  value: ls?.cpu_ms_per_login ?? NaN, unit: 'ms', digits: 3, peer: ['mod_auth_openidc', la?.cpu_ms_per_login ?? NaN],
  ratio: ratioOf(la?.cpu_ms_per_login, ls?.cpu_ms_per_login), op: '>=', bound: 8, boundUnit: 'x',
}));
const inf = summary.inflight;
const inflightNote = [
  inf && run.options.inflight !== 10000 ? `${run.options.inflight} in flight (--inflight), not the issue's 10,000` : '',
  inf?.idp_errors > 0 ? `and ${inf.idp_errors} failures on the test IdP's own pages (not counted: the IdP giving way)` : '',
].filter(Boolean).join('; ');
const inflightName = `${inf ? run.options.inflight : 10000} logins in flight`;
rows.push(goal('inflight_errors', `${inflightName}: errors at the gateway`, {
  value: inf?.gateway_errors ?? NaN, unit: '', digits: 0, op: '==', bound: 0, boundUnit: '', note: inflightNote,
}));
rows.push(goal('inflight_rss', `${inflightName}: ssogate peak RSS`, {
  value: inf?.peak_rss_mib ?? NaN, unit: 'MiB', digits: 1, op: '<', bound: 256, boundUnit: ' MiB', note: inflightNote,
}));
rows.push(goal('inflight_healthz', `${inflightName}: /_sso/healthz p99`, {
  value: inf?.healthz_p99_ms ?? NaN, unit: 'ms', digits: 2, op: '<', bound: 20, boundUnit: ' ms', note: inflightNote,
}));

const table = [];
const col = (xs, k) => Math.max(...xs.map((r) => r[k].length));
const head = { id: '', name: 'target (issue 12)', value: 'ssogate', peer: 'peer', ratio: 'ratio', threshold: 'threshold', status: 'result' };
const all = [head, ...rows];
const widths = Object.fromEntries(['name', 'value', 'peer', 'ratio', 'threshold'].map((k) => [k, col(all, k)]));
table.push(`ISSUE 12 TARGETS (bench/run ${run.options.only}, ${run.options.rounds} round(s), ${run.date}, commit ${run.commit})`
  + (run.options.pinned ? ' PINNED (--pin: the proxies on CPU 1, the rest on CPU 0; a diagnostic, not the issue\'s method)' : ''));
for (const [i, r] of all.entries()) {
  table.push(`${i ? `${String(i).padStart(2)}.` : '   '} ${r.name.padEnd(widths.name)}  ${r.value.padStart(widths.value)}  ${r.peer.padEnd(widths.peer)}  ${r.ratio.padStart(widths.ratio)}  ${r.threshold.padEnd(widths.threshold)}  ${r.status}`);
}
for (const [i, r] of rows.entries()) {
  if (r.note && !r.status.startsWith('not')) {
    table.push(`    note ${i + 1}: ${r.note}`);
  }
}
const counts = (status) => summary.targets.filter((t) => t.status === status).length;
table.push(`Issue 12: ${counts('met')} met, ${counts('missed')} missed, ${counts('not measured')} not measured (of ${summary.targets.length})`);
// The machine is shared: a round that costs far more than its other round(s) is flagged (a disturbed
// run, or a cost that comes in waves). The figures above are still the means of all rounds; this
// says how far to trust them.
const ROUND_SPREAD = 1.15;
summary.disturbed = [];
const measured = [...levels.map((l) => [`${l} sessions`, summary.wrk[l]]), ['auth: none', summary.public ?? {}]];
for (const [what, byTarget] of measured) {
  for (const [t, r] of Object.entries(byTarget)) {
    const rounds = (r.cpu_us_per_request_rounds ?? []).filter(Number.isFinite);
    if (rounds.length > 1 && Math.max(...rounds) / Math.min(...rounds) > ROUND_SPREAD) {
      summary.disturbed.push({ what, target: t, cpu_us_per_request_rounds: rounds });
    }
  }
}
if (summary.disturbed.length) {
  const list = summary.disturbed.map((d) => `${d.what} ${d.target} ${d.cpu_us_per_request_rounds.map((x) => fmt(x, 1)).join(' / ')} us`);
  table.push(`ROUNDS APART: CPU per request of one round more than ${ROUND_SPREAD}x another's: ${list.join('; ')}. Either the run was disturbed or a cost comes in waves (at many sessions ssogate signs each session's assertion again every assertion.ttl_s / 2, and mod_auth_openidc's second round is often the dearer): compare with another run before reading the ratios.`);
}
// Not a target: what ssogate held in memory during the wrk runs.
const rssOf = (r) => (r?.peak_rss_mib !== undefined ? `${fmt(r.peak_rss_mib, 1)} MiB` : 'n/a');
if (levels.some((l) => summary.wrk[l].ssogate?.peak_rss_mib !== undefined)) {
  table.push(`(not a target) ssogate peak RSS after the wrk runs: ${levels.map((l) => `${l} sessions ${rssOf(summary.wrk[l].ssogate)}`).join(', ')}`);
}
table.push('');

const text = `${[...table, ...out].join('\n')}\n`;
fs.writeFileSync(path.join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
fs.writeFileSync(path.join(dir, 'summary.txt'), text);
process.stdout.write(text);

// ---- plots ----
// Latency against percentile, on a "nines" axis: x = -log10(1 - p/100), so p90 is 1, p99 is 2.
function curveFile(name, percentiles) {
  const lines = percentiles.filter(([p]) => p < 100).map(([p, ms]) => `${-Math.log10(1 - p / 100)} ${Math.max(ms, 0.001)}`);
  fs.writeFileSync(path.join(dir, `${name}.dat`), `${lines.join('\n')}\n`);
  return `${name}.dat`;
}
const plots = [];
function plot(png, title, series) {
  if (series.length === 0) {
    return;
  }
  plots.push(`set output '${png}'
set title '${title.replace(/'/g, '')}'
plot ${series.map(([file, label]) => `'${file}' using 1:2 with linespoints title '${label}'`).join(', ')}`);
}
for (const level of levels) {
  plot(`wrk-${level}.png`, `Authenticated request latency, ${level} sessions held (wrk -c64)`,
    Object.entries(summary.wrk[level]).map(([t, r]) => [curveFile(`wrk-${level}-${t}`, r.percentiles), t]));
}
plot('logins.png', 'Login latency (whole flow) and callback hop',
  Object.entries(summary.logins).flatMap(([g, r]) => [
    ...(r.hops.login ? [[curveFile(`login-${g}`, r.hops.login.percentiles), `${g} login`]] : []),
    ...(r.hops.callback ? [[curveFile(`callback-${g}`, r.hops.callback.percentiles), `${g} callback`]] : []),
  ]));
if (summary.inflight && files.includes('inflight.json')) {
  const hops = read('inflight.json').load.hops;
  plot('inflight.png', 'Logins in flight: /_sso/healthz and login latency',
    ['probe', 'login', 'callback'].filter((h) => hops[h]).map((h) => [curveFile(`inflight-${h}`, hops[h].percentiles), h === 'probe' ? '/_sso/healthz' : h]));
}
if (summary.cluster) {
  const c = Object.entries(summary.cluster);
  plot('cluster-logins.png', 'Login latency (whole flow): one host on LMDB, one and two on PostgreSQL',
    c.filter(([, r]) => r.logins?.hops.login).map(([t, r]) => [curveFile(`cluster-login-${t}`, r.logins.hops.login.percentiles), r.name]));
  plot('cluster-wrk.png', 'Authenticated request latency through the balancer (wrk -c64)',
    c.filter(([, r]) => r.requests).map(([t, r]) => [curveFile(`cluster-wrk-${t}`, r.requests.percentiles), r.name]));
}
if (summary.workers) {
  plot('workers.png', 'ssogate workers: authenticated request latency',
    Object.entries(summary.workers).map(([n, r]) => [curveFile(`workers-${n}`, r.percentiles), `${n} worker${n === '1' ? '' : 's'}`]));
}
if (plots.length) {
  const script = `set terminal pngcairo noenhanced size 900,540
set logscale y
set xlabel 'percentile'
set ylabel 'latency (ms)'
set xtics ('0' 0, '90' 1, '99' 2, '99.9' 3, '99.99' 4)
set grid
set key bottom right box opaque
${plots.join('\n')}
`;
  fs.writeFileSync(path.join(dir, 'plots.gp'), script);
  if (fs.existsSync(path.join(raw, 'inflight-rss.tsv'))) {
    fs.appendFileSync(path.join(dir, 'plots.gp'), `set output 'inflight-rss.png'
unset logscale y
set xtics auto
set xlabel 'seconds'
set ylabel 'RSS (MiB)'
set title 'ssogate resident memory while logins are in flight'
plot 'raw/inflight-rss.tsv' using 1:($2/1024) every ::1 with lines title 'ssogate RSS'
`);
  }
  try {
    execFileSync('gnuplot', ['plots.gp'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (err) {
    process.stderr.write(`bench/report.js: gnuplot failed: ${err.message}\n`);
  }
}
