import { Option, type Command } from 'commander';
import { connectionOptions, millisecondsOption, type ConnectionFlags } from '../options';
import { withVm } from '../session';
import { VmiError } from '../../lib/errors';
import { execInContainer } from '../../lib/ops/exec';
import { escapeForTerminal } from '../../lib/util/escape';
import { EXIT, execExitStatus, setExitStatuses } from '../exit-codes';
import { hostWindowSize, withRawMode } from '../terminal';

interface ExecFlags extends ConnectionFlags {
  env: string[];
  workdir?: string;
  user?: string;
  interactive?: boolean;
  tty?: boolean;
  privileged?: boolean;
  verbose?: boolean;
  timeout: number;
}

/** `-u UID[:GID]` (numbers only: names would need the container's /etc/passwd). */
export function parseUser(text: string): { uid: number; gid?: number } {
  const m = /^(\d{1,10})(?::(\d{1,10}))?$/.exec(text);
  if (!m) throw new VmiError('EUSAGE', `-u takes UID[:GID] as numbers, not ${JSON.stringify(text)}`);
  const uid = Number(m[1]);
  const gid = m[2] === undefined ? undefined : Number(m[2]);
  if (uid > 0xfffffffe || (gid !== undefined && gid > 0xfffffffe)) throw new VmiError('EUSAGE', `-u: id out of range: ${text}`);
  return { uid, gid };
}

/** Writes to a stream, waiting for it to drain; a closed stream (EPIPE) drops the rest. */
function sink(stream: NodeJS.WriteStream): (data: Buffer) => Promise<void> {
  let closed = false;
  return (data) => new Promise<void>((resolve) => {
    if (closed) return resolve();
    stream.write(data, (err) => {
      if (err) closed = true;
      resolve();
    });
  });
}

/**
 * The command's words. A `--` right after the container is vmictl's separator (scripts and the docs
 * write `exec c1 -- ls -l`); any later `--` is the command's own.
 */
export function commandWords(words: readonly string[]): string[] {
  const command = words[0] === '--' ? words.slice(1) : [...words];
  if (command.length === 0) throw new VmiError('EUSAGE', 'exec: no command given after the container');
  return command;
}

/** `vmictl exec [OPTIONS] CONTAINER COMMAND [ARGS...]`: everything after the container is the command's. */
export function registerExec(program: Command): void {
  const exec = connectionOptions(
    program
      .command('exec')
      .description('run a command inside a container, confined as its own processes (user, capabilities, seccomp, LSM label, no_new_privs, namespaces, cgroup, root), relaying its output; exits with its status')
      .argument('<container>', 'id, id prefix, name, hostname, or pid:<host pid>')
      .argument('<command...>', 'the program (absolute path, or a name looked up in the container\'s PATH) and its arguments, flags included: vmictl\'s own options go before the container'),
    { dump: false, injects: true },
  )
    // as docker exec: `exec c1 id -u 1000` gives -u to id, not to vmictl
    .passThroughOptions()
    .addOption(new Option('-e, --env <K=V>', 'set an environment variable (repeatable)').argParser((v: string, prev: string[]) => [...prev, v]).default([]))
    .option('-w, --workdir <dir>', 'working directory inside the container (default /)')
    .option('-u, --user <uid[:gid]>', 'run as this user id (and group id): needs a process of the container that may take it')
    .option('--privileged', 'run from the VM\'s root instead: every capability, no seccomp, no LSM label (as docker exec --privileged, and more)')
    .option('-v, --verbose', 'say on stderr which process the command is started from')
    .option('-i, --interactive', 'relay vmictl\'s stdin to the command (its end closes the command\'s stdin); without it the command\'s stdin is /dev/null')
    .option('-t, --tty', 'run the command on a pseudo-terminal of the container; with -i, vmictl\'s stdin must be a terminal, put in raw mode while the command runs')
    .addOption(millisecondsOption('--timeout <ms>', 'how long to wait for a root process of the VM to come back from a syscall', 20000))
    .action(async (container: string, words: string[], flags: ExecFlags) => {
      const command = commandWords(words);
      // as docker: an interactive terminal needs one on this side
      if (flags.tty && flags.interactive && !process.stdin.isTTY) throw new VmiError('EUSAGE', 'the input device is not a TTY');
      const user = flags.user === undefined ? undefined : parseUser(flags.user);
      if (flags.privileged) process.stderr.write('vmictl: --privileged: the command runs with the privileges of the VM\'s root (every capability, no seccomp filter, no LSM confinement), not those of the container\'s processes\n');
      const r = await withVm(flags, (vm, stopSignal) => {
        const run = () => execInContainer(vm, {
          container,
          command,
          env: flags.env,
          cwd: flags.workdir,
          user,
          privileged: flags.privileged === true,
          onSource: flags.verbose ? (src) => process.stderr.write(`vmictl: started from ${src.privileged ? 'the root-namespace helper' : src.init ? 'the container\'s init' : 'container process'} pid ${src.pid} (${escapeForTerminal(src.comm)})\n`) : undefined,
          stdout: sink(process.stdout),
          stderr: sink(process.stderr),
          stdin: flags.interactive ? process.stdin : undefined,
          tty: flags.tty ? { windowSize: () => hostWindowSize([process.stdout, process.stderr]) } : undefined,
          signal: stopSignal,
          timeout: flags.timeout,
        });
        return flags.tty && flags.interactive ? withRawMode(process.stdin, run) : run();
      }).finally(() => {
        // a read of stdin still waiting would keep vmictl from exiting once the command has
        if (flags.interactive) process.stdin.destroy();
      });
      process.exitCode = execExitStatus({ exitCode: r.exitCode });
    });
  // exec's status is its command's: vmictl's own, a wrong command line's included, stay out of that range
  setExitStatuses(exec, { usage: EXIT.execFailed, failure: (err) => execExitStatus({ error: err }) })
    .addHelpText('after', `\nExit status: the command's own; ${EXIT.execNotFound} when it was not found, ${EXIT.execCannotRun} when it cannot run, ${EXIT.execFailed} when vmictl failed or its command line was wrong.`);
}
