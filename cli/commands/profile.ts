import * as fs from 'node:fs';
import { Command } from 'commander';
import { VmiError } from '../../lib/errors';
import { buildProfile, writeProfile, Profile } from '../../lib/kernel/profile';
import { buildProfileFromMemory } from '../../lib/kernel/profile/from-memory';
import { connectionOptions, type ConnectionFlags } from '../options';
import { withVm } from '../session';
import { escapeForTerminal } from '../../lib/util/escape';
import { printJson } from '../render/json';
import type { ProfileInfoJson, ProfileTypeJson } from '../render/profile';
import { progressBar } from '../render/progress';

interface BuildFlags extends ConnectionFlags {
  vmlinux?: string;
  fromVm?: boolean;
  systemMap?: string;
  output: string;
  hash: boolean;
}

interface InfoFlags {
  json?: boolean;
  type?: string;
}

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(0)} MiB`;
}

/** Peak resident memory of this process so far, in bytes (getrusage ru_maxrss). */
function peakRss(): number {
  return Math.max(process.resourceUsage().maxRSS * 1024, process.memoryUsage().rss);
}

/** `vmictl profile build|info`: make a profile from a debug vmlinux, or describe one. */
export function registerProfile(program: Command): void {
  const profile = program.command('profile').description('kernel profiles (struct layouts and symbols, Volatility ISF JSON)');

  const build = profile
    .command('build')
    .description('build a profile from a debug vmlinux (DWARF types, .symtab or System.map symbols, linux_banner), or from a running VM (--from-vm: its kallsyms and BTF)')
    .option('--vmlinux <file>', 'vmlinux with debug info (e.g. from the linux-image-*-dbg package)')
    .option('--from-vm', 'read the symbols (kallsyms) and types (BTF) from the guest kernel in the VM (--qmp or --dump)')
    .option('--system-map <file>', 'System.map whose addresses override the ELF symbol table')
    .requiredOption('-o, --output <file>', 'profile to write (.json, or .json.gz for gzip)')
    .option('--no-hash', 'do not record sha256 hashes of the inputs in the metadata');
  // the profile is made from guest memory, never read from one: no --profile
  connectionOptions(build, { profile: false })
    .addHelpText('after', '\nThe VM options (--qmp, --gdb, --memory, --max-read, --time-limit, --dump) are used with --from-vm only.')
    .action(async (flags: BuildFlags) => {
      if (flags.fromVm) {
        if (flags.vmlinux) throw new VmiError('EUSAGE', '--from-vm and --vmlinux exclude each other');
        await withVm(flags, async (vm, signal) => {
          const memory = await vm.memory();
          const bar = progressBar({ label: 'profile from guest memory', unit: 'steps' });
          let built;
          try {
            built = await buildProfileFromMemory(memory.backend, await vm.ram(), { signal, onProgress: bar.update });
          } finally {
            bar.finish();
          }
          const bytes = writeProfile(built.doc, flags.output);
          const s = built.stats;
          process.stderr.write(`banner: ${escapeForTerminal(s.banner)}\n`);
          process.stdout.write(
            `wrote ${escapeForTerminal(flags.output)} (${mib(bytes)}): ${s.userTypes} structs/unions, ${s.enums} enums, ${s.symbols} symbols ` +
              `from guest memory (kallsyms in ${s.seconds.kallsyms.toFixed(1)} s, ${s.btfTypes} BTF types in ${s.seconds.btf.toFixed(1)} s), ` +
              `KASLR slide 0x${s.virtualSlide.toString(16)}\n`,
          );
        });
        return;
      }
      if (!flags.vmlinux) throw new VmiError('EUSAGE', 'give --vmlinux FILE, or --from-vm with a VM');
      if (!fs.existsSync(flags.vmlinux)) throw new VmiError('ENOENT', `no such file: ${flags.vmlinux}`);
      const bar = progressBar({ label: 'reading .debug_info', unit: 'bytes' });
      let peak = peakRss();
      let result;
      try {
        result = buildProfile({
          vmlinux: flags.vmlinux!,
          systemMap: flags.systemMap,
          noHash: !flags.hash,
          onProgress: (done, total) => {
            peak = Math.max(peak, process.memoryUsage().rss);
            bar.update(done, total);
          },
        });
      } finally {
        bar.finish();
      }
      const started = Date.now();
      const bytes = writeProfile(result.doc, flags.output);
      peak = Math.max(peak, peakRss());
      const s = result.stats;
      const seconds = s.seconds + (Date.now() - started) / 1000;
      if (s.banner) process.stderr.write(`banner: ${escapeForTerminal(s.banner)}\n`);
      else process.stderr.write('warning: no linux_banner found; this profile cannot be matched to a running kernel by banner\n');
      process.stdout.write(
        `wrote ${escapeForTerminal(flags.output)} (${mib(bytes)}): ${s.userTypes} structs/unions, ${s.enums} enums, ` +
          `${s.baseTypes} base types, ${s.symbols} symbols (${s.symtabSymbols} from .symtab` +
          `${s.systemMapSymbols ? `, ${s.systemMapSymbols} from System.map` : ''}, ${s.dwarfVariables} DWARF variables) ` +
          `from ${s.units} units (DWARF ${s.dwarfVersions.join('/')}, ${mib(s.infoBytes)}) in ${seconds.toFixed(1)} s, peak RSS ${mib(peak)}\n`,
      );
    });

  profile
    .command('info')
    .description('show what a profile is for, and optionally the layout of one struct')
    .argument('<file>', 'profile (.json or .json.gz)')
    .option('--type <name>', 'print the fields of this struct/union')
    .option('--json', 'print JSON')
    .action((file: string, flags: InfoFlags) => {
      const p = Profile.load(file);
      const counts = p.counts;
      if (flags.type) {
        const t = p.userType(flags.type);
        const fields = p.fields(flags.type);
        if (flags.json) {
          const out: ProfileTypeJson = { name: flags.type, kind: t.kind, size: t.size, fields: fields.map((f) => ({ name: f.name, offset: f.offset, size: f.size, type: describe(f.type) })) };
          printJson(out);
        } else {
          process.stdout.write(`${t.kind} ${escapeForTerminal(flags.type)} (size ${t.size})\n`);
          for (const f of fields) {
            process.stdout.write(`  ${String(f.offset).padStart(6)}  ${String(f.size).padStart(5)}  ${escapeForTerminal(f.name)}: ${escapeForTerminal(describe(f.type))}\n`);
          }
        }
        return;
      }
      const producer = p.metadata.producer;
      const out: ProfileInfoJson = {
        file,
        banner: p.banner ?? null,
        producer: producer ? { ...(producer.name !== undefined ? { name: producer.name } : {}), ...(producer.version !== undefined ? { version: producer.version } : {}), ...(producer.datetime !== undefined ? { datetime: producer.datetime } : {}) } : null,
        format: p.metadata.format,
        userTypes: counts.userTypes,
        enums: counts.enums,
        baseTypes: counts.baseTypes,
        symbols: counts.symbols,
      };
      if (flags.json) printJson(out);
      else {
        process.stdout.write(
          `banner: ${out.banner === null ? '(none)' : escapeForTerminal(out.banner)}\n` +
            `format: ${escapeForTerminal(out.format)}, producer: ${escapeForTerminal(`${out.producer?.name ?? '?'} ${out.producer?.version ?? ''}`)}\n` +
            `${counts.userTypes} structs/unions, ${counts.enums} enums, ${counts.baseTypes} base types, ${counts.symbols} symbols\n`,
        );
      }
    });
}

/** C-like text for a type descriptor. */
function describe(t: import('../../lib/kernel/profile').TypeRef): string {
  switch (t.kind) {
    case 'base':
      return t.name;
    case 'struct':
    case 'union':
    case 'class':
    case 'enum':
      return `${t.kind} ${t.name}`;
    case 'pointer':
      return `${describe(t.subtype)} *`;
    case 'array':
      return `${describe(t.subtype)}[${t.count}]`;
    case 'function':
      return 'function';
    case 'bitfield':
      return `${describe(t.type)} :${t.bit_length} (bit ${t.bit_position})`;
  }
}
