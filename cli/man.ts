/**
 * vmictl(1), in roff for the man macros, generated from the commander tree as the completion
 * scripts are: every command with its arguments and options is in the page without anyone
 * editing it. The page has no date, so that a build makes the same page from the same tree.
 */
import type { Argument, Command, Option } from 'commander';
import { commandNodes, visibleOptions } from './command-tree';
import { EXIT_STATUS_NOTE, EXIT_STATUS_TABLE } from './exit-codes';
import { GLOBAL_OPTIONS_HELP } from './global-options';

/**
 * Text as roff reads it literally: a backslash is an escape, `-` a hyphen a terminal may draw as
 * another character (options must stay copyable, so every one is a minus), and anything past
 * ASCII is named by its code point, which groff reads whatever the input encoding.
 */
export function roffText(text: string): string {
  let out = '';
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\e';
    else if (ch === '-') out += '\\-';
    else if (c > 0x7e || (c < 0x20 && ch !== '\n')) out += `\\[u${c.toString(16).toUpperCase().padStart(4, '0')}]`;
    else out += ch;
  }
  // a line that starts with . or ' would be a request
  return out.replace(/^(?=[.'])/gm, '\\&');
}

const bold = (s: string) => `\\fB${roffText(s)}\\fR`;
const italic = (s: string) => `\\fI${roffText(s)}\\fR`;

/** `\fB\-e\fR, \fB\-\-env\fR \fIK=V\fR`: the flags bold, the value italic. */
function optionTag(o: Option): string {
  const names = [o.short, o.long].filter((f): f is string => f !== undefined).map(bold).join(', ');
  const value = /([<[])(.*)[>\]]$/.exec(o.flags);
  if (!value) return names;
  return value[1] === '<' ? `${names} ${italic(value[2]!)}` : `${names} [${italic(value[2]!)}]`;
}

/** What the option's help line says, and what commander adds to it: choices, default, variable. */
function optionText(o: Option): string {
  const extra: string[] = [];
  if (o.argChoices) extra.push(`one of: ${o.argChoices.join(', ')}`);
  if (o.defaultValue !== undefined && !(Array.isArray(o.defaultValue) && o.defaultValue.length === 0) && typeof o.defaultValue !== 'boolean') {
    extra.push(`default: ${String(o.defaultValue)}`);
  }
  if (o.envVar) extra.push(`environment: ${o.envVar}`);
  return roffText(o.description + (extra.length ? ` (${extra.join('; ')})` : ''));
}

function argumentTag(a: Argument): string {
  const name = italic(a.name()) + (a.variadic ? '...' : '');
  return a.required ? name : `[${name}]`;
}

function argumentText(a: Argument): string {
  const choices = a.argChoices ? ` (one of: ${a.argChoices.join(', ')})` : '';
  return roffText(a.description + choices);
}

function tagged(tag: string, text: string): string[] {
  return ['.TP', tag, text];
}

function commandSection(path: string, cmd: Command, program: Command): string[] {
  const synopsis = [bold(`${program.name()} ${path}`), ...(visibleOptions(cmd).length ? ['[\\fIoptions\\fR]'] : []), ...cmd.registeredArguments.map(argumentTag)];
  const lines = [`.SS "${roffText(path)}"`, synopsis.join(' '), '.PP', roffText(cmd.description())];
  if (cmd.registeredArguments.length) {
    lines.push('.PP', 'Arguments:', '.RS');
    for (const a of cmd.registeredArguments) lines.push(...tagged(argumentTag(a), argumentText(a)));
    lines.push('.RE');
  }
  const options = visibleOptions(cmd);
  if (options.length) {
    lines.push('.PP', 'Options:', '.RS');
    for (const o of options) lines.push(...tagged(optionTag(o), optionText(o)));
    lines.push('.RE');
  }
  return lines;
}

/** The variables the commands read that no option names (those are listed from the options). */
const OTHER_ENVIRONMENT: ReadonlyArray<[string, string]> = [
  ['VMICTL_PROFILES', 'colon-separated directories searched for kernel profiles before ~/.config/vmictl/profiles'],
  ['XDG_CONFIG_HOME', 'where the config file and the profiles directory are (default: ~/.config)'],
  ['XDG_CACHE_HOME', 'where profiles built from guest memory are cached, under vmictl/ (default: ~/.cache)'],
  ['XDG_RUNTIME_DIR', 'where the injection journal directory is, under vmictl/'],
];

const FILES: ReadonlyArray<[string, string]> = [
  ['$XDG_CONFIG_HOME/vmictl/config.json', 'named VMs: {"default": NAME, "vms": {NAME: {"qmp": ADDR, "gdb": ADDR, "vmlinux": FILE, "profile": FILE}}}; chosen with --vm or VMICTL_VM, or else the file\'s default VM (which is not used when --qmp or --dump gives the VM). An option or its environment variable beats the VM\'s field. The file and its directory must be the user\'s and not writable by group or others; an unknown key, a relative path or an address other than a unix socket or loopback TCP is an error (exit status 2).'],
  ['$XDG_CONFIG_HOME/vmictl/profiles/', 'kernel profiles (ISF JSON) matched to the guest kernel by its banner'],
  ['$XDG_CACHE_HOME/vmictl/', 'profiles built from guest memory, cached'],
  ['$XDG_RUNTIME_DIR/vmictl/, or /tmp/vmictl-UID/', 'the injection journal: what vmictl recover needs to put back a process whose injection was cut short; a private directory (0700)'],
];

function unwrap(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, ' ');
}

/** The whole page. */
export function manPage(program: Command): string {
  const name = program.name();
  const version = program.version() ?? '';
  const nodes = commandNodes(program);
  const envFromOptions = new Map<string, string>();
  for (const n of nodes) {
    for (const o of visibleOptions(n.command)) {
      if (o.envVar && !envFromOptions.has(o.envVar)) envFromOptions.set(o.envVar, `the default of ${o.long}`);
    }
  }
  const lines = [
    `.TH ${name.toUpperCase()} 1 "" "${roffText(`${name} ${version}`)}" "User Commands"`,
    '.SH NAME',
    `${roffText(name)} \\- ${roffText(program.description().replace(/^./, (c) => c.toLowerCase()))}`,
    '.SH SYNOPSIS',
    `${bold(name)} [\\fIVM options\\fR] \\fIcommand\\fR [\\fIoptions\\fR] [\\fIarguments\\fR]`,
    '.br',
    `${bold(name)} ${bold('--help')} | ${bold('--version')}`,
    '.br',
    `${bold(name)} \\fIcommand\\fR ${bold('--help')}`,
    '.SH DESCRIPTION',
    roffText(program.description() + '.'),
    '.PP',
    roffText(unwrap(GLOBAL_OPTIONS_HELP)),
    '.SH OPTIONS',
    ...visibleOptions(program).flatMap((o) => tagged(optionTag(o), optionText(o))),
    ...tagged(`${bold('-h')}, ${bold('--help')}`, 'print the help of the program, or of the command it follows'),
    '.SH COMMANDS',
    ...nodes.filter((n) => n.path).flatMap((n) => commandSection(n.path, n.command, program)),
    '.SH EXIT STATUS',
    ...EXIT_STATUS_TABLE.flatMap(([status, meaning]) => tagged(bold(status), roffText(meaning))),
    '.PP',
    roffText(EXIT_STATUS_NOTE),
    '.SH ENVIRONMENT',
    ...[...envFromOptions].flatMap(([v, what]) => tagged(bold(v), roffText(what))),
    ...OTHER_ENVIRONMENT.flatMap(([v, what]) => tagged(bold(v), roffText(what))),
    '.SH FILES',
    ...FILES.flatMap(([path, what]) => tagged(italic(path), roffText(what))),
    '.SH SEE ALSO',
    `${bold('qemu-system-x86_64')}(1), ${bold('virsh')}(1), ${bold('gdb')}(1)`,
    '.PP',
    roffText('docs/commands.md (every option, the JSON output), docs/own-vm.md and docs/libvirt.md (setting a VM up), in the package and at the project.'),
  ];
  return lines.join('\n') + '\n';
}
