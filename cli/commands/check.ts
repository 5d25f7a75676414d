import { Option, type Command } from 'commander';
import { connectionOptions, type ConnectionFlags } from '../options';
import { withVm } from '../session';
import { escapeForTerminal } from '../../lib/util/escape';
import { checkKernel } from '../../lib/integrity/check';
import { findingToJson } from '../../lib/integrity/finding';
import { printJson } from '../render/json';
import { checkJson } from '../render/check';
import { EXIT, setExitStatuses } from '../exit-codes';
import { progressBar } from '../render/progress';

interface CheckFlags extends ConnectionFlags {
  json?: boolean;
  vmlinux?: string;
  baseline?: string;
  record?: boolean;
  syscalls?: string;
  text?: boolean;
  containers?: boolean;
}

/** `vmictl check`: kernel integrity (hooks, inline patches, IDT, hidden processes and modules). */
export function registerCheck(program: Command): void {
  const check = connectionOptions(program.command('check').description('check the guest kernel (against its vmlinux, or from its own kallsyms and code without one): syscall table, inline hooks, .text, IDT, hidden processes and modules'))
    .option('--json', 'print JSON')
    .addOption(new Option('--vmlinux <file>', "the guest kernel's vmlinux with relocations (linux-image-*-dbg)").env('VMICTL_VMLINUX'))
    .option('--baseline <file>', 'a baseline recorded from this boot: compared with when the file exists, recorded when not')
    .option('--record', 'with --baseline: record it again now (a moment you trust)')
    .option('--syscalls <list>', 'comma-separated system calls whose code paths are watched (default: those vmictl injects)')
    .option('--no-text', 'compare only the watched functions, not all of .text')
    .option('--containers', "only the containers' confinement: tasks in the host's namespaces or credentials, roots outside their mount namespace, helpers pointed into a container (plain check includes it)")
    .action(async (flags: CheckFlags) => {
      await withVm(flags, async (vm, signal) => {
        const bar = progressBar({ label: 'checking', unit: 'steps', flags });
        const report = await checkKernel(vm, {
          signal,
          onProgress: bar.update,
          vmlinux: flags.vmlinux,
          baseline: flags.baseline,
          record: flags.record,
          wholeText: flags.text,
          syscalls: flags.syscalls?.split(',').map((s) => s.trim()).filter(Boolean),
          containers: flags.containers ? 'only' : true,
        }).finally(bar.finish);
        if (report.findings.length > 0) process.exitCode = EXIT.checkFindings;
        if (flags.json) {
          printJson(checkJson(report), { indent: 2 });
          return;
        }
        const c = report.checked;
        const lines = report.findings.map((f) => {
          const o = findingToJson(f);
          return `${o.kind.padEnd(15)} ${o.address}  ${escapeForTerminal(o.symbol)}\n${' '.repeat(16)}expected ${escapeForTerminal(o.expected)}\n${' '.repeat(16)}found    ${escapeForTerminal(o.found)}${o.detail ? `\n${' '.repeat(16)}${escapeForTerminal(o.detail)}` : ''}`;
        });
        const ct = report.containers;
        if (ct) for (const line of ct.configuration) lines.push(`configuration   ${escapeForTerminal(line)}`);
        const containerWords = ct ? `, ${ct.checked} container(s) and their ${ct.tasks} tasks` : '';
        if (report.mode === 'containers') {
          lines.push(`${report.findings.length} finding(s); checked the confinement of ${ct?.checked ?? 0} container(s) and their ${ct?.tasks ?? 0} tasks, and the kernel's helper paths, in ${report.ms} ms`);
        } else if (report.mode === 'kallsyms') {
          lines.push(`${report.findings.length} finding(s); checked from guest memory and kallsyms: ${c.syscallTableEntries} sys_call_table entries, ${c.functions} functions on the syscall paths (${c.textBytes} bytes of code decoded, ${c.patchSites} ftrace sites against the kernel's records), ${c.idtGates} IDT gates, ${c.tracingAttachments} ftrace_ops and kprobes, the pid IDR and the module tree${containerWords}, in ${report.ms} ms`);
          lines.push(`not checked ${report.notChecked} (--vmlinux FILE does those)`);
        } else lines.push(`${report.findings.length} finding(s); checked ${c.syscallTableEntries} sys_call_table entries, ${c.functions} watched functions, ${c.textBytes} bytes of code (${c.patchSites} patch sites), ${c.idtGates} IDT gates, ${c.tracingAttachments} ftrace_ops and kprobes, the pid IDR and the module tree${containerWords}, in ${report.ms} ms`);
        if (report.recorded) lines.push(`baseline recorded in ${escapeForTerminal(report.recorded)}`);
        process.stdout.write(lines.join('\n') + '\n');
      });
    });
  // 1 is "something found": a script must not read a check that never ran as one that found nothing, or as a finding
  setExitStatuses(check, { usage: EXIT.usage, failure: () => EXIT.checkNotDone })
    .addHelpText('after', `\nExit status: ${EXIT.ok} nothing found, ${EXIT.checkFindings} something found, ${EXIT.usage} wrong command line, ${EXIT.checkNotDone} could not check.`);
}
