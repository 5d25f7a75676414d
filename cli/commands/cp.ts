import type { Command } from 'commander';
import { connectionOptions, millisecondsOption, type ConnectionFlags } from '../options';
import { withVm } from '../session';
import { VmiError } from '../../lib/errors';
import { escapeForTerminal } from '../../lib/util/escape';
import { copyFromContainer, copyToContainer, parseCopyOperand, type CopyReport } from '../../lib/ops';
import { printJson } from '../render/json';
import { cpJson } from '../render/copy';
import { progressBar } from '../render/progress';

interface CpFlags extends ConnectionFlags {
  archive?: boolean;
  followLink?: boolean;
  raw?: boolean;
  force?: boolean;
  json?: boolean;
  progress: boolean;
  timeout: number;
  maxBytes?: string;
}

/** Writes to stdout, waiting until each chunk is taken (a closed pipe fails the copy, cleanly). */
function stdoutSink(chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(chunk, (err) => (err ? reject(err) : resolve()));
  });
}

function summary(r: CopyReport): string {
  const parts = [`${r.files} file${r.files === 1 ? '' : 's'}`, `${r.bytes} bytes`];
  if (r.directories) parts.push(`${r.directories} director${r.directories === 1 ? 'y' : 'ies'}`);
  if (r.symlinks) parts.push(`${r.symlinks} symlink${r.symlinks === 1 ? '' : 's'}`);
  let s = `vmictl: copied ${parts.join(', ')}${r.resolvedInRoot === false ? ' (no openat2 in this kernel: paths resolved by the process root only)' : ''}\n`;
  for (const x of r.skipped) s += `vmictl: skipped ${escapeForTerminal(x.path)}: ${escapeForTerminal(x.reason)}\n`;
  if (r.dropped.skipped) s += `vmictl: ... and ${r.dropped.skipped} more skipped\n`;
  for (const x of r.errors) s += `vmictl: failed ${escapeForTerminal(x.path)}: ${escapeForTerminal(x.reason)}\n`;
  if (r.dropped.errors) s += `vmictl: ... and ${r.dropped.errors} more failed\n`;
  return s;
}

/** `vmictl cp [-aL] [--force] SRC DST`, one of them CONTAINER:PATH; - is a tar stream, as docker's. */
export function registerCp(program: Command): void {
  connectionOptions(
    program
      .command('cp')
      .description('copy files and directories between a container and the host (CONTAINER:PATH; - is a tar stream on stdin or stdout)')
      .argument('<source>', 'CONTAINER:PATH, a local path, or - (a tar stream on stdin)')
      .argument('<destination>', 'CONTAINER:PATH, a local path, or - (a tar stream on stdout)'),
    { dump: false, injects: true },
  )
    .option('-a, --archive', 'keep uid/gid (into a container: as far as its process may chown; out of one: when vmictl runs as root)')
    .option('-L, --follow-link', 'follow a symlink given as the source (only that one)')
    .option('--raw', 'with -: the bytes of one file rather than a tar stream')
    .option('-r, --recursive', 'no effect: directories are always copied whole (kept for old scripts)')
    .option('-f, --force', 'replace existing local files when copying out of a container (files in a container are always replaced)')
    .option('--no-progress', 'no progress bar (it is only drawn when stderr is a terminal)')
    .option('--json', 'print the report as JSON (on stderr when stdout is the copy)')
    .addOption(millisecondsOption('--timeout <ms>', 'how long to wait for a thread of the container', 20000))
    .option('--max-bytes <bytes>', 'out of a container: stop once this many bytes were copied (each file is bounded by its size anyway)')
    .action(async (source: string, destination: string, flags: CpFlags) => {
      const from = parseCopyOperand(source);
      const to = parseCopyOperand(destination);
      if ((from === null) === (to === null)) throw new VmiError('EUSAGE', 'exactly one of source and destination must be CONTAINER:PATH');
      const bar = progressBar({ label: 'copying', unit: 'bytes', flags, hidden: to === null && destination === '-' });
      const maxBytes = flags.maxBytes === undefined ? undefined : Number(flags.maxBytes);
      if (maxBytes !== undefined && !(Number.isSafeInteger(maxBytes) && maxBytes >= 0)) throw new VmiError('EUSAGE', `--max-bytes must be a number of bytes, not ${JSON.stringify(flags.maxBytes)}`);
      if (flags.raw && source !== '-' && destination !== '-') throw new VmiError('EUSAGE', '--raw applies to - only');
      const opts = { archive: flags.archive, followLink: flags.followLink, raw: flags.raw, force: flags.force, timeout: flags.timeout, onProgress: bar.update, maxBytes };
      let report: CopyReport;
      try {
        report = await withVm(flags, (vm, signal) => (from
          ? copyFromContainer(vm, from.container, from.path, destination, { ...opts, signal }, stdoutSink)
          : copyToContainer(vm, source, to!.container, to!.path, { ...opts, signal }, process.stdin)));
      } finally {
        bar.finish();
      }
      if (flags.json) printJson(cpJson(report), { stream: destination === "-" ? process.stderr : process.stdout });
      else process.stderr.write(summary(report));
      if (report.errors.length || report.dropped.errors) process.exitCode = 1;
    });
}
