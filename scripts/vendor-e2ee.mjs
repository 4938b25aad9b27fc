#!/usr/bin/env node
// Reproduces web/vendor/ (the browser's MLS library, issue 16) from the npm
// tarballs: `node scripts/vendor-e2ee.mjs` (needs npm and tar; network to the registry).
//
// Why a script and not a copy: the server's CSP is `script-src 'self'`, so the
// page cannot use an inline import map. Instead the bare specifiers
// ("@noble/hashes/sha2.js", "@hpke/core", ...) are rewritten here to relative
// paths, and this file is what a reviewer reads to trust that rewrite: it
// changes only import specifiers (and drops `//# sourceMappingURL` comments).
//
// Only the files reached from ts-mls's index (static imports) plus the dynamic
// imports ciphersuite 1 needs (DYNAMIC_FOLLOW) are copied. Other dynamic imports
// (ML-KEM, X448, ChaCha, P-256, ML-DSA, node's "crypto") stay bare: they are only
// reached for other suites, or in Node where "crypto" is built in.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync, existsSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'web', 'vendor');

// [npm name, version, folder under web/vendor, {dependency name: folder}]
// @noble/curves 2.0.1 pins @noble/hashes 2.0.1 exactly, so it gets its own copy
// (as npm would nest it); everything else uses @noble/hashes 2.4.0.
const PACKAGES = [
  ['ts-mls', '1.6.4', 'ts-mls'],
  ['@hpke/core', '1.9.0', '@hpke/core'],
  ['@hpke/common', '1.10.1', '@hpke/common'],
  ['@noble/hashes', '2.4.0', '@noble/hashes'],
  ['@noble/hashes', '2.0.1', '@noble/hashes@2.0.1'],
  ['@noble/curves', '2.0.1', '@noble/curves', { '@noble/hashes': '@noble/hashes@2.0.1' }],
  ['@noble/ciphers', '2.1.1', '@noble/ciphers'],
  // X25519 in JavaScript: Firefox ESR 140's WebCrypto cannot export some
  // imported X25519 private keys, which @hpke/core's KEM does on every commit
  // with an update path (web/e2ee/mls.js uses this one where that fails).
  ['@hpke/dhkem-x25519', '1.8.0', '@hpke/dhkem-x25519'],
];
const DYNAMIC_FOLLOW = new Set(['@noble/curves/ed25519.js']);

const work = mkdtempSync(join(tmpdir(), 'vendor-e2ee-'));
const pkgs = new Map(); // folder -> {name, version, integrity, dir, json, deps}
for (const [name, version, folder, deps = {}] of PACKAGES) {
  const [info] = JSON.parse(execFileSync('npm', ['pack', `${name}@${version}`, '--json', '--pack-destination', work], { encoding: 'utf8' }));
  const dir = join(work, folder.replace(/[@/]/g, '_'));
  mkdirSync(dir);
  execFileSync('tar', ['xzf', join(work, info.filename), '-C', dir, '--strip-components=1']);
  pkgs.set(folder, { name, version, integrity: info.integrity, dir, json: JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')), deps });
}
const folderOf = (fromFolder, name) => pkgs.get(fromFolder).deps[name] ?? [...pkgs.keys()].find((f) => f === name);

/** Resolves "name/sub" to [folder, file inside the package] through its "exports" (import condition). */
function resolveBare(fromFolder, spec) {
  const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
  const folder = folderOf(fromFolder, name);
  if (!folder) return null;
  const sub = '.' + spec.slice(name.length);
  const exp = pkgs.get(folder).json.exports;
  const pick = (t) => (typeof t === 'string' ? t : t && (t.import ?? t.default));
  let target = pick(exp[sub]);
  if (!target) {
    for (const [k, v] of Object.entries(exp)) {
      const star = k.indexOf('*');
      if (star >= 0 && sub.startsWith(k.slice(0, star)) && sub.endsWith(k.slice(star + 1))) {
        target = pick(v).replace('*', sub.slice(star, sub.length - (k.length - star - 1)));
      }
    }
  }
  if (!target) throw new Error(`cannot resolve ${spec} in ${folder}`);
  return [folder, target.replace(/^\.\//, '')];
}

// Static: `import ... from "x"`, `export ... from "x"`, `import "x"` at a statement start
// (not in comments). Dynamic: `import("x")`.
const STATIC = /(^|[;\n}])(\s*(?:import|export)\s[^;'"]*?\bfrom\s*|\s*import\s*)(["'])([^"']+)\3/g;
const DYNAMIC = /(\bimport\(\s*)(["'])([^"']+)\2/g;

const done = new Set();
const queue = [['ts-mls', 'dist/src/index.js'], ['@hpke/dhkem-x25519', 'esm/mod.js']];
const files = new Map(); // "folder/file" -> rewritten source
while (queue.length) {
  const [folder, file] = queue.pop();
  const key = `${folder}/${file}`;
  if (done.has(key)) continue;
  done.add(key);
  const src = readFileSync(join(pkgs.get(folder).dir, file), 'utf8');
  const rewrite = (spec, follow) => {
    if (spec.startsWith('.')) {
      if (follow) queue.push([folder, join(dirname(file), spec)]);
      return spec;
    }
    if (!follow) return spec;
    const hit = resolveBare(folder, spec);
    if (!hit) throw new Error(`unknown package in ${key}: ${spec}`);
    queue.push(hit);
    let rel = relative(dirname(join(folder, file)), join(hit[0], hit[1]));
    return rel.startsWith('.') ? rel : './' + rel;
  };
  // Besides specifiers, only the source-map comments go (the .map files are not vendored).
  let out = src.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n').replace(STATIC, (m, pre, mid, q, spec) => pre + mid + q + rewrite(spec, true) + q);
  out = out.replace(DYNAMIC, (m, pre, q, spec) => pre + q + rewrite(spec, spec.startsWith('.') || DYNAMIC_FOLLOW.has(spec)) + q);
  files.set(key, out);
}

// Write: reached JS files, each package's licence, one package.json so that
// Node treats the files as ES modules, and VERSIONS.
if (existsSync(OUT)) rmSync(OUT, { recursive: true });
for (const [key, text] of files) {
  mkdirSync(dirname(join(OUT, key)), { recursive: true });
  writeFileSync(join(OUT, key), text);
}
let versions = '# Vendored by scripts/vendor-e2ee.mjs from the npm registry; only files reached\n'
  + '# by ciphersuite 1 (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519), bare imports\n'
  + '# rewritten to relative paths (no import map: the CSP forbids inline scripts).\n'
  + '# folder  package  version  integrity  files\n';
for (const [folder, p] of pkgs) {
  const n = [...files.keys()].filter((k) => k.startsWith(folder + '/')).length;
  const lic = ['LICENSE', 'LICENSE.md', 'LICENSE.txt'].find((l) => existsSync(join(p.dir, l)));
  if (!lic) throw new Error(`no licence in ${p.name}`);
  mkdirSync(join(OUT, folder), { recursive: true });
  copyFileSync(join(p.dir, lic), join(OUT, folder, 'LICENSE'));
  versions += `${folder}  ${p.name}  ${p.version}  ${p.integrity}  ${n}\n`;
}
writeFileSync(join(OUT, 'package.json'), '{ "type": "module" }\n');
writeFileSync(join(OUT, 'VERSIONS'), versions);
rmSync(work, { recursive: true });
console.log(versions);
