#!/usr/bin/env node
// Reads TAP (from node-tap's `--reporter=tap`) and prints one line: "N passed, N failed[, N skipped]".
// It counts assertions, not files: a test point is a leaf unless deeper test points just preceded it.
'use strict';
const fs = require('node:fs');
const lines = fs.readFileSync(process.argv[2] || 0, 'utf8').split('\n');
let passed = 0, failed = 0, skipped = 0, todo = 0;
const points = [];
let inYaml = -1;
for (const line of lines) {
  const indent = line.length - line.trimStart().length;
  if (inYaml >= 0) {
    if (line.trim() === '...' && indent === inYaml) inYaml = -1;
    continue;
  }
  if (line.trim() === '---') { inYaml = indent; continue; }
  const m = /^(\s*)(not ok|ok)\b(?:\s+\d+)?(.*)$/.exec(line);
  if (m) points.push({ indent, ok: m[2] === 'ok', rest: m[3] });
}
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
  else failed++;
}
let out = `${passed} passed, ${failed} failed`;
if (skipped + todo > 0) out += `, ${skipped + todo} skipped`;
process.stdout.write(out + '\n');
process.exitCode = failed > 0 ? 1 : 0;
