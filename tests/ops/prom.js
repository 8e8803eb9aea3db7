'use strict';
// prom.js - a small parser for the Prometheus text exposition format
// (version 0.0.4), strict enough to catch a malformed /metrics page:
//   # HELP name text        # TYPE name counter|gauge|histogram|summary|untyped
//   name{label="value",...} number [timestamp]
// Label values may hold \\, \" and \n escapes. Numbers may be +Inf, -Inf, NaN.

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseNumber(s, where) {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`${where}: bad number '${s}'`);
  return Number(s);
}

// Parses `{a="x",b="y"}` starting at text[i] === '{'; returns [labels, next index].
function parseLabels(text, i, where) {
  const labels = {};
  i++; // '{'
  for (;;) {
    while (text[i] === ' ') i++;
    if (text[i] === '}') return [labels, i + 1];
    let j = i;
    while (j < text.length && text[j] !== '=') j++;
    const name = text.slice(i, j).trim();
    if (!LABEL.test(name)) throw new Error(`${where}: bad label name '${name}'`);
    if (text[j + 1] !== '"') throw new Error(`${where}: label ${name} value must be quoted`);
    let v = '';
    j += 2;
    for (;; j++) {
      if (j >= text.length) throw new Error(`${where}: unterminated label value`);
      const c = text[j];
      if (c === '"') break;
      if (c === '\\') {
        const n = text[++j];
        if (n === 'n') v += '\n';
        else if (n === '\\' || n === '"') v += n;
        else throw new Error(`${where}: bad escape \\${n}`);
      } else v += c;
    }
    if (Object.prototype.hasOwnProperty.call(labels, name)) throw new Error(`${where}: label ${name} twice`);
    labels[name] = v;
    i = j + 1;
    while (text[i] === ' ') i++;
    if (text[i] === ',') i++;
    else if (text[i] !== '}') throw new Error(`${where}: expected , or } after label ${name}`);
  }
}

function key(name, labels) {
  const ks = Object.keys(labels).sort();
  return ks.length ? `${name}{${ks.map(k => `${k}=${JSON.stringify(labels[k])}`).join(',')}}` : name;
}

// The family a sample belongs to (histogram/summary samples carry suffixes).
function familyOf(name, types) {
  if (types.has(name)) return name;
  for (const suf of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suf)) {
      const base = name.slice(0, -suf.length);
      const t = types.get(base);
      if (t === 'histogram' || (t === 'summary' && suf !== '_bucket')) return base;
    }
  }
  return null;
}

// Parses an exposition; throws on any syntax error, a sample without a TYPE,
// a series listed twice, or an inconsistent histogram.
function parse(text) {
  const samples = [], types = new Map(), help = new Map(), seen = new Set();
  const lines = text.split('\n');
  if (lines[lines.length - 1] !== '') throw new Error('exposition must end with a newline');
  lines.forEach((line, n) => {
    const where = `line ${n + 1}`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) return; // other comments are allowed
      if (!NAME.test(m[2])) throw new Error(`${where}: bad metric name '${m[2]}'`);
      if (m[1] === 'TYPE') {
        if (!TYPES.has(m[3])) throw new Error(`${where}: bad type '${m[3]}'`);
        if (types.has(m[2])) throw new Error(`${where}: TYPE ${m[2]} twice`);
        if (samples.some(s => familyOf(s.name, new Map([[m[2], m[3]]])) === m[2])) throw new Error(`${where}: TYPE after samples of ${m[2]}`);
        types.set(m[2], m[3]);
      } else help.set(m[2], m[3]);
      return;
    }
    let i = 0;
    while (i < line.length && line[i] !== '{' && line[i] !== ' ') i++;
    const name = line.slice(0, i);
    if (!NAME.test(name)) throw new Error(`${where}: bad metric name '${name}'`);
    let labels = {};
    if (line[i] === '{') [labels, i] = parseLabels(line, i, where);
    const rest = line.slice(i).trim().split(/\s+/);
    if (rest.length < 1 || rest.length > 2 || rest[0] === '') throw new Error(`${where}: expected 'value [timestamp]'`);
    const value = parseNumber(rest[0], where);
    const fam = familyOf(name, types);
    if (!fam) throw new Error(`${where}: sample ${name} has no # TYPE`);
    const k = key(name, labels);
    if (seen.has(k)) throw new Error(`${where}: series ${k} twice`);
    seen.add(k);
    samples.push({ name, labels, value, family: fam });
  });
  const page = new Metrics(samples, types, help);
  page.checkHistograms();
  return page;
}

class Metrics {
  constructor(samples, types, help) {
    this.samples = samples;
    this.types = types;
    this.help = help;
    this.byKey = new Map(samples.map(s => [key(s.name, s.labels), s.value]));
  }
  // The value of one series (undefined when absent).
  get(name, labels = {}) { return this.byKey.get(key(name, labels)); }
  // Like get, but absent is an error.
  val(name, labels = {}) {
    const v = this.get(name, labels);
    if (v === undefined) throw new Error(`no series ${key(name, labels)} in /metrics`);
    return v;
  }
  series(name) { return this.samples.filter(s => s.name === name); }
  sum(name) { return this.series(name).reduce((a, s) => a + s.value, 0); }
  // Bucket counts per histogram are cumulative, end with le="+Inf", and
  // the +Inf bucket equals _count.
  checkHistograms() {
    for (const [fam, t] of this.types) {
      if (t !== 'histogram') continue;
      const groups = new Map();
      for (const s of this.series(`${fam}_bucket`)) {
        if (!('le' in s.labels)) throw new Error(`${fam}_bucket without le`);
        const { le, ...rest } = s.labels;
        const g = key('', rest);
        if (!groups.has(g)) groups.set(g, { labels: rest, bs: [] });
        groups.get(g).bs.push([parseNumber(le, `${fam} le`), s.value]);
      }
      if (!groups.size) throw new Error(`histogram ${fam} has no buckets`);
      for (const [g, { labels, bs }] of groups) {
        bs.sort((a, b) => a[0] - b[0]);
        for (let i = 1; i < bs.length; i++)
          if (bs[i][1] < bs[i - 1][1]) throw new Error(`histogram ${fam}${g}: buckets not cumulative`);
        const last = bs[bs.length - 1];
        if (last[0] !== Infinity) throw new Error(`histogram ${fam}${g}: no +Inf bucket`);
        const count = this.get(`${fam}_count`, labels);
        if (count !== last[1]) throw new Error(`histogram ${fam}${g}: +Inf bucket ${last[1]} != _count ${count}`);
        if (this.get(`${fam}_sum`, labels) === undefined) throw new Error(`histogram ${fam}${g}: no _sum`);
      }
    }
  }
  // The q-quantile upper bound of a histogram (the first bucket holding it).
  quantileBound(fam, q) {
    const bs = this.series(`${fam}_bucket`).map(s => [parseNumber(s.labels.le, 'le'), s.value]).sort((a, b) => a[0] - b[0]);
    const total = bs[bs.length - 1][1];
    return (bs.find(b => b[1] >= q * total) || bs[bs.length - 1])[0];
  }
}

module.exports = { parse, key };
