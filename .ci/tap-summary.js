#!/usr/bin/env node
// Reads TAP (from node-tap's `--reporter=tap`) and prints one line: "N passed, N failed[, N skipped]".
// It counts assertions, not files: a test point is a leaf unless deeper test points just preceded it.
// Each failed leaf is listed first, with its chain of subtests and the start of its diagnostics, so
// that the tail of a CI log (often all that is kept) says what failed.
'use strict';
const fs = require('node:fs');
const lines = fs.readFileSync(process.argv[2] || 0, 'utf8').split('\n');
let passed = 0, failed = 0, skipped = 0, todo = 0;
const points = [];
const subtests = [];
let inYaml = -1;
for (const line of lines) {
  const indent = line.length - line.trimStart().length;
  if (inYaml >= 0) {
    if (line.trim() === '...' && indent === inYaml) inYaml = -1;
    else if (points.length > 0 && points[points.length - 1].yamlIndent === inYaml) points[points.length - 1].yaml.push(line);
    continue;
  }
  if (line.trim() === '---') {
    inYaml = indent;
    if (points.length > 0 && points[points.length - 1].indent === indent - 2) points[points.length - 1].yamlIndent = indent;
    continue;
  }
  const s = /^(\s*)# Subtest: (.*)$/.exec(line);
  if (s) {
    while (subtests.length > 0 && subtests[subtests.length - 1].indent >= indent) subtests.pop();
    subtests.push({ indent, name: s[2] });
    continue;
  }
  const m = /^(\s*)(not ok|ok)\b(?:\s+\d+)?(.*)$/.exec(line);
  if (m) {
    const chain = subtests.filter((t) => t.indent < indent).map((t) => t.name);
    points.push({ indent, ok: m[2] === 'ok', rest: m[3], chain, yaml: [], yamlIndent: -1 });
  }
}
const failures = [];
for (let i = 0; i < points.length; i++) {
  const p = points[i];
  const isParent = i > 0 && points[i - 1].indent > p.indent;
  if (isParent && p.ok) continue;
  if (isParent && !p.ok && /# (SKIP|TODO)/i.test(p.rest)) continue;
  // a failed parent with failed children is counted through its children; count it only if none failed
  if (isParent && !p.ok) {
    let j = i - 1, childFailed = false;
    while (j >= 0 && points[j].indent > p.indent) { if (!points[j].ok) childFailed = true; j--; }
    if (childFailed) continue;
  }
  if (/#\s*SKIP/i.test(p.rest)) skipped++;
  else if (/#\s*TODO/i.test(p.rest)) todo++;
  else if (p.ok) passed++;
  else { failed++; failures.push(p); }
}
// the log is read on a terminal: no control characters from test output
const clean = (s) => s.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
for (const f of failures.slice(0, 20)) {
  process.stdout.write(`FAILED: ${clean([...f.chain, f.rest.replace(/^\s*-\s*/, '')].join(' > '))}\n`);
  for (const y of f.yaml.slice(0, 14)) process.stdout.write(`    ${clean(y.trim()).slice(0, 300)}\n`);
}
if (failures.length > 20) process.stdout.write(`FAILED: ... and ${failures.length - 20} more\n`);
let out = `${passed} passed, ${failed} failed`;
if (skipped + todo > 0) out += `, ${skipped + todo} skipped`;
process.stdout.write(out + '\n');
process.exitCode = failed > 0 ? 1 : 0;
