// `vmictl man`: the manual page generated from the command tree, through the real CLI; rendered by
// groff when the machine has it.
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { buildProgram, main } from '../../cli/main';
import { commandNodes, visibleOptions } from '../../cli/command-tree';
import { EXIT_STATUS_TABLE } from '../../cli/exit-codes';
import { roffText } from '../../cli/man';
import { captureMain } from '../helpers/run-cli';

async function page(): Promise<string> {
  const r = await captureMain(main, ['man']);
  if (r.code !== 0) throw new Error(`man: status ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** The page's sections (`.SH NAME`) and subsections (`.SS "ps"`), by heading, with their text. */
function split(text: string, macro: string): Map<string, string> {
  const parts = text.split(new RegExp(`^\\${macro} `, 'm')).slice(1);
  return new Map(parts.map((p) => [p.slice(0, p.indexOf('\n')).replace(/^"|"$/g, ''), p]));
}

t.test('the sections of a man page, in order', async (t) => {
  const text = await page();
  t.match(text, /^\.TH VMICTL 1 "" "vmictl \d+\.\d+\.\d+" "User Commands"\n/);
  t.same([...split(text, '.SH').keys()], ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'OPTIONS', 'COMMANDS', 'EXIT STATUS', 'ENVIRONMENT', 'FILES', 'SEE ALSO']);
  t.match(split(text, '.SH').get('NAME'), /^NAME\nvmictl \\- manage the containers/);
});

t.test('every command, with each of its arguments and options, under its own heading', async (t) => {
  const text = await page();
  const sections = split(text, '.SS');
  const nodes = commandNodes(buildProgram());
  t.ok(nodes.length > 15, `${nodes.length} commands`);
  let options = 0;
  for (const { path, command } of nodes) {
    const section = path ? sections.get(roffText(path)) : split(text, '.SH').get('OPTIONS');
    if (!section) {
      t.fail(`no section for ${path}`);
      continue;
    }
    for (const a of command.registeredArguments) t.ok(section.includes(`\\fI${roffText(a.name())}\\fR`), `${path} <${a.name()}>`);
    for (const o of visibleOptions(command)) {
      for (const flag of [o.short, o.long].filter((f): f is string => f !== undefined)) {
        t.ok(section.includes(`\\fB${roffText(flag)}\\fR`), `${path || 'vmictl'} ${flag}`);
        options++;
      }
      t.ok(section.includes(roffText(o.description)), `${path || 'vmictl'} ${o.long}: its description`);
    }
  }
  t.ok(options > 150, `${options} flag spellings`);
  t.ok(sections.has('profile build') && sections.has('man') && sections.has('completion'), 'subcommands and the commands that reach no VM too');
  t.match(sections.get('ps'), /\\fB\\-\\-memory\\fR \\fImemory\\fR|\\fB\\-\\-memory\\fR \\fIbackend\\fR/);
  t.match(sections.get('ps'), /one of: auto, gdbstub, procmem; default: auto/, 'choices and defaults, as --help says them');
  t.match(sections.get('exec'), /\(environment: VMICTL_QMP\)/);
});

t.test('exit statuses, environment and files', async (t) => {
  const sections = split(await page(), '.SH');
  for (const [status, meaning] of EXIT_STATUS_TABLE) t.ok(sections.get('EXIT STATUS')!.includes(`.TP\n\\fB${roffText(status)}\\fR\n${roffText(meaning)}\n`), status);
  for (const v of ['VMICTL_VM', 'VMICTL_QMP', 'VMICTL_GDB', 'VMICTL_VMLINUX', 'VMICTL_PROFILES', 'XDG_CONFIG_HOME', 'XDG_RUNTIME_DIR']) t.match(sections.get('ENVIRONMENT'), `\\fB${roffText(v)}\\fR`, v);
  t.match(sections.get('FILES'), /\\fI\$XDG_CONFIG_HOME\/vmictl\/config\.json\\fR/);
  t.match(sections.get('FILES'), /\/tmp\/vmictl\\-UID/, 'the journal directory');
});

t.test('roffText: nothing in a description is read as a request or an escape', async (t) => {
  t.equal(roffText('a\\b'), 'a\\eb');
  t.equal(roffText('--qmp'), '\\-\\-qmp');
  t.equal(roffText('.so /etc/passwd'), '\\&.so /etc/passwd');
  t.equal(roffText("x\n'br"), "x\n\\&'br");
  t.equal(roffText('openat…'), 'openat\\[u2026]');
  t.equal(roffText('\u{1F600}'), '\\[u1F600]');
});

// groff, -ww: every warning; -z: no output, the warnings only
const groff = spawnSync('groff', ['--version'], { encoding: 'utf8' });
const noGroff = groff.error ? `groff cannot run here (${groff.error.message}): the page is not rendered` : false;
if (noGroff) t.comment(`skipped: ${noGroff}`);

t.test('groff renders the page without a warning', { skip: noGroff }, async (t) => {
  const text = await page();
  const check = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z'], { input: text, encoding: 'utf8' });
  t.equal(check.status, 0);
  t.equal(check.stderr, '', 'no warnings');
  const rendered = spawnSync('groff', ['-man', '-Tutf8', '-P', '-c'], { input: text, encoding: 'utf8' }).stdout.replace(/.\x08/g, '');
  t.match(rendered, /^ +vmictl ps \[options\]$/m, 'a command\'s synopsis');
  t.match(rendered, /--qmp addr/, 'options as they are typed, with ASCII hyphens');
});
