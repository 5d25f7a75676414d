/**
 * The real-kernel check: builds a profile from a Debian debug vmlinux and compares the layout of
 * the structs vmictl relies on with what pahole (dwarves) reads from the same file.
 *
 * Needs VMICTL_DBG_VMLINUX=/path/to/vmlinux-<version> (from linux-image-<version>-dbg, e.g.
 * `apt-get download linux-image-6.1.0-56-cloud-amd64-dbg` and
 * `dpkg-deb --fsys-tarfile X.deb | tar -x --wildcards './usr/lib/debug/boot/vmlinux-*'`) and pahole.
 */
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { buildProfile, Profile, serializeProfile } from '../../lib/kernel/profile';

const VMLINUX = process.env.VMICTL_DBG_VMLINUX;

/** The fields named in the design (what the kernel helpers read); every other member pahole lists is compared too. */
const REQUIRED: Record<string, string[]> = {
  task_struct: ['tasks', 'pid', 'tgid', 'comm', 'nsproxy', 'real_parent', 'mm', 'cred', 'thread_pid'],
  mm_struct: ['pgd', 'arg_start'],
  nsproxy: ['count', 'uts_ns', 'ipc_ns', 'mnt_ns', 'pid_ns_for_children', 'net_ns', 'cgroup_ns'],
  pid: ['numbers', 'level'],
  upid: ['nr', 'ns'],
  list_head: ['next', 'prev'],
  cred: ['uid'],
  css_set: ['dfl_cgrp'],
  cgroup: ['kn'],
  kernfs_node: ['name', 'parent'],
};

export interface PaholeMember {
  name: string;
  offset: number;
  /** Bit offset within the storage unit at `offset`, for bitfields. */
  bit?: number;
  size: number;
}

/** `__attribute__((...))`, with one level of nested parentheses inside. */
const ATTRIBUTE = /\s*__attribute__\(\((?:[^()]|\([^()]*\))*\)\)\s*/g;

/** The member name in a pahole declaration (`char comm[16]`, `void (*fn)(int)`, `unsigned x:1`). */
function declName(declaration: string): string | undefined {
  let decl = declaration.replace(ATTRIBUTE, ' ').trim();
  const fp = /\(\*\s*(\w+)\)/.exec(decl);
  if (fp) return fp[1];
  decl = decl.replace(/:\s*\d+$/, '').replace(/(\[\d*\])+$/, '');
  return /(\w+)$/.exec(decl)?.[1];
}

/**
 * Parses `pahole -C NAME` output: the struct size and every member with its offset and size.
 * pahole expands members of anonymous struct/union type in place, with offsets from the start of
 * the outer struct: those of an unnamed member are the outer struct's own (`pgd` in mm_struct),
 * those of a named one get its name as a path prefix (`lru_gen.list`).
 */
export function parsePahole(text: string): { size: number; members: PaholeMember[] } {
  const stack: PaholeMember[][] = [[]];
  let size = -1;
  for (const line of text.split('\n')) {
    const sz = /\/\*\s*size:\s*(\d+),/.exec(line);
    if (sz && size < 0 && stack.length === 1) size = Number(sz[1]);
    // An anonymous struct/union/enum opened inline (`const struct {`, `enum {`); the outer
    // struct's own first line has a name and is not a frame.
    if (/^\s+(?:(?:const|volatile)\s+)*(struct|union|enum)\s*\{\s*$/.test(line)) {
      stack.push([]);
      continue;
    }
    const close = /^\s+\}\s*(.*?);\s*\/\*\s*(\d+)\s+(\d+)\s*\*\/\s*$/.exec(line);
    if (close && stack.length > 1) {
      const inner = stack.pop()!;
      const rest = close[1].replace(ATTRIBUTE, ' ').trim();
      const name = rest === '' ? undefined : declName(rest);
      const parent = stack[stack.length - 1];
      if (name) parent.push({ name, offset: Number(close[2]), size: Number(close[3]) });
      // Members of a pointed-to (`} *parts;`) or arrayed (`} pairs[4];`) anonymous struct are not
      // at fixed places in this one.
      if (!rest.includes('*') && !rest.includes('[')) {
        for (const m of inner) parent.push(name ? { ...m, name: `${name}.${m.name}` } : m);
      }
      continue;
    }
    const m = /^\s*([^/}].*?);\s*\/\*\s*(\d+)(?::\s*(\d+))?\s+(\d+)\s*\*\/\s*$/.exec(line);
    if (!m) continue;
    const name = declName(m[1]);
    if (!name) continue;
    const member: PaholeMember = { name, offset: Number(m[2]), size: Number(m[4]) };
    if (m[3] !== undefined) member.bit = Number(m[3]);
    stack[stack.length - 1].push(member);
  }
  return { size, members: stack[0] };
}

const skip = VMLINUX ? false : 'VMICTL_DBG_VMLINUX is not set: set it to a debug vmlinux (linux-image-*-dbg) to compare profile layouts with pahole';
if (skip) t.comment(`skipped: ${skip}`);
t.test('pahole comparison', { skip, timeout: 300_000 }, (t) => {
  if (!VMLINUX) return t.end();
  {
    const pahole = spawnSync('pahole', ['--version'], { encoding: 'utf8' });
    if (pahole.status !== 0) {
      t.fail('pahole is not installed (apt-get install dwarves)');
      t.end();
      return;
    }
    const started = Date.now();
    const { doc, stats } = buildProfile({ vmlinux: VMLINUX, noHash: true });
    const seconds = (Date.now() - started) / 1000;
    const peak = process.resourceUsage().maxRSS * 1024;
    t.comment(`built in ${seconds.toFixed(1)} s, peak RSS ${(peak / 1048576).toFixed(0)} MiB: ${stats.userTypes} structs/unions, ${stats.enums} enums, ${stats.symbols} symbols`);
    t.ok(seconds < 60, `built in well under a minute (${seconds.toFixed(1)} s)`);
    t.ok(stats.banner?.startsWith('Linux version '), `banner: ${stats.banner}`);

    // Through the file format and back, as vmictl uses it.
    const p = Profile.fromJson(serializeProfile(doc), 'pahole-test');
    t.ok(p.hasSymbol('init_task'), 'init_task');
    t.same(p.symbolType('init_task'), { kind: 'struct', name: 'task_struct' });
    t.equal(p.symbol('init_task') >> 32n, 0xffffffffn, 'init_task is a kernel address');
    t.ok(p.hasEnumConstant(undefined, 'TASK_COMM_LEN'), 'constants of anonymous enums');

    let compared = 0;
    for (const [struct, required] of Object.entries(REQUIRED)) {
      t.test(struct, (t) => {
        const r = spawnSync('pahole', ['-C', struct, VMLINUX], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
        t.equal(r.status, 0, `pahole -C ${struct}`);
        const ref = parsePahole(r.stdout);
        t.ok(ref.members.length > 0, `pahole listed ${ref.members.length} members`);
        t.equal(p.typeSize(struct), ref.size, `sizeof(struct ${struct})`);
        const names = new Set(ref.members.map((m) => m.name));
        for (const f of required) t.ok(names.has(f), `pahole lists ${struct}.${f}`);
        for (const m of ref.members) {
          const f = p.field(struct, m.name);
          if (m.bit !== undefined) {
            t.equal(f.type.kind, 'bitfield', `${struct}.${m.name} is a bitfield`);
            const ours = f.type.kind === 'bitfield' ? f.offset * 8 + f.type.bit_position : -1;
            t.equal(ours, m.offset * 8 + m.bit, `${struct}.${m.name} bit offset`);
          } else {
            t.equal(f.offset, m.offset, `${struct}.${m.name} offset`);
          }
          t.equal(f.size, m.size, `${struct}.${m.name} size`);
          compared++;
        }
        t.end();
      });
    }
    t.test('summary', (t) => {
      t.ok(compared > 300, `${compared} members compared with pahole`);
      t.end();
    });
    t.end();
  }
});
