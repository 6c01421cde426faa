#!/usr/bin/env node
// Builds vmcomm's native addon (binding.gyp → build/Release/vmcomm_native.node). It is the package's
// `install` script, so `npm install` and `npm ci` run it, as do `npm rebuild` in this directory and
// `npm rebuild vmcomm` where vmcomm is a dependency; by hand: `node scripts/build-addon.mjs`.
//
// Offline by design: node-gyp gets `--nodedir` = the prefix of the running Node (the directory above
// `bin/node`, whose include/node holds the headers), so it never downloads headers. node-gyp itself is
// the copy bundled with npm (`npm_config_node_gyp` inside npm scripts, else found next to the npm CLI).
//
// It prints one line: built, skipped, or failed with the reason, the full log's path and the command to
// rerun. It always exits 0: without the addon, pairs that would use shared memory use tcp. (Tests fail
// instead when CI=true and the addon did not load: backends/native/test/load.test.ts.)

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ADDON = path.join(ROOT, 'build', 'Release', 'vmcomm_native.node');
const LOG = path.join(ROOT, 'build', 'build-addon.log');
const RERUN = '`node scripts/build-addon.mjs` in the vmcomm directory (where vmcomm is a dependency: `npm rebuild vmcomm`)';
const FALLBACK = 'pairs that would use shared memory use tcp';

function say(line) {
  console.log(`vmcomm: ${line}`);
}

function relative(file) {
  return path.relative(process.cwd(), file) || file;
}

/** The npm-bundled node-gyp: npm's own pointer first, then next to the npm CLI that runs us, then next to `node`. */
function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    process.env.npm_execpath && path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ].filter((candidate) => typeof candidate === 'string' && candidate !== '');
  for (const candidate of candidates) if (existsSync(candidate)) return { path: candidate, tried: candidates };
  try {
    const local = createRequire(path.join(ROOT, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
    return { path: local, tried: candidates };
  } catch {
    return { path: undefined, tried: candidates };
  }
}

/** The first lines that say why a compile or link failed, else the last non-empty line. */
function reasonOf(output) {
  const lines = output.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const telling = lines.find((l) => /\berror\b|fatal|undefined reference|not found|No such file/i.test(l) && !/^gyp (ERR|info)/.test(l));
  return telling ?? lines.at(-1) ?? 'no output';
}

function fail(reason, output) {
  let where = '';
  if (output !== undefined) {
    try {
      mkdirSync(path.dirname(LOG), { recursive: true });
      writeFileSync(LOG, output);
      where = ` Full log: ${relative(LOG)}.`;
    } catch {
      // the reason alone still says what failed
    }
  }
  say(`native addon NOT built: ${reason}.${where} Without it, ${FALLBACK}. Rerun: ${RERUN}`);
  process.exit(0);
}

function main() {
  if (process.platform !== 'linux') {
    say(`native addon skipped: it is Linux-only (this is ${process.platform}); ${FALLBACK}.`);
    return;
  }
  const started = process.hrtime.bigint();
  const nodedir = path.resolve(path.dirname(process.execPath), '..');
  const header = path.join(nodedir, 'include', 'node', 'node_api.h');
  if (!existsSync(header)) {
    fail(`no Node headers at ${path.dirname(header)} (the prefix of ${process.execPath}); install them (e.g. the nodejs headers/dev package)`);
  }
  const gyp = findNodeGyp();
  if (gyp.path === undefined) fail(`node-gyp not found (looked at ${gyp.tried.join(', ')} and in node_modules)`);

  const args = [gyp.path, 'rebuild', `--nodedir=${nodedir}`, '--jobs=max'];
  const command = [process.execPath, ...args].map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ');
  const build = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, npm_config_nodedir: nodedir } });
  const output = `$ ${command}\n${build.stdout ?? ''}${build.stderr ?? ''}${build.error ? `\n${build.error.stack}` : ''}`;
  if (build.error) fail(`could not run node-gyp: ${build.error.message}`, output);
  if (build.status !== 0) fail(`node-gyp exited with ${build.status ?? build.signal}: ${reasonOf(`${build.stdout}\n${build.stderr}`)}`, output);
  if (!existsSync(ADDON)) fail(`node-gyp succeeded but ${relative(ADDON)} is missing`, output);

  // A binary that does not load (a missing symbol, another Node's ABI) is a failed build too.
  const check = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(ADDON)})`], { encoding: 'utf8' });
  if (check.status !== 0) fail(`built, but it does not load: ${reasonOf(check.stderr ?? '')}`, `${output}\n$ load check\n${check.stderr}`);

  mkdirSync(path.dirname(LOG), { recursive: true });
  writeFileSync(LOG, output);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  say(
    `native addon built: ${relative(ADDON)} (Node ${process.versions.node}, ABI ${process.versions.modules}, ${process.platform}-${process.arch}, ${seconds.toFixed(1)} s)`,
  );
}

main();
