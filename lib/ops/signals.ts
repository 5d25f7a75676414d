/**
 * Signal names and numbers of Linux x86-64 (arch/x86/include/uapi/asm/signal.h). Real-time
 * signals are SIGRTMIN+n (34 + n) as the kernel numbers them; glibc reserves the first two, which
 * does not matter for sending.
 */
import { VmiError } from '../errors';

export const SIGNALS: Readonly<Record<string, number>> = Object.freeze({
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGIOT: 6, SIGBUS: 7, SIGFPE: 8,
  SIGKILL: 9, SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15,
  SIGSTKFLT: 16, SIGCHLD: 17, SIGCONT: 18, SIGSTOP: 19, SIGTSTP: 20, SIGTTIN: 21, SIGTTOU: 22,
  SIGURG: 23, SIGXCPU: 24, SIGXFSZ: 25, SIGVTALRM: 26, SIGPROF: 27, SIGWINCH: 28, SIGIO: 29,
  SIGPOLL: 29, SIGPWR: 30, SIGSYS: 31,
});

const SIGRTMIN = 34;
const SIGRTMAX = 64;

export interface Signal {
  number: number;
  name: string;
}

/** `KILL`, `SIGKILL`, `sigkill`, `9`, `RTMIN+3` → the signal; anything else is a usage error. */
export function parseSignal(spec: string | number): Signal {
  const text = String(spec).trim();
  if (/^[0-9]{1,2}$/.test(text)) {
    const n = Number(text);
    if (n < 1 || n > SIGRTMAX) throw new VmiError('EUSAGE', `no signal number ${n} (1-${SIGRTMAX})`);
    return { number: n, name: signalName(n) };
  }
  const upper = text.toUpperCase();
  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
  if (Object.prototype.hasOwnProperty.call(SIGNALS, name)) return { number: SIGNALS[name], name };
  const rt = /^SIGRT(MIN|MAX)(?:([+-])([0-9]{1,2}))?$/.exec(name);
  if (rt) {
    const base = rt[1] === 'MIN' ? SIGRTMIN : SIGRTMAX;
    const n = base + (rt[2] === '-' ? -1 : 1) * Number(rt[3] ?? 0);
    if (n >= SIGRTMIN && n <= SIGRTMAX) return { number: n, name: signalName(n) };
  }
  throw new VmiError('EUSAGE', `unknown signal ${JSON.stringify(text)} (a name such as TERM or SIGKILL, or a number)`);
}

/** The usual name of a signal number. */
export function signalName(n: number): string {
  const found = Object.entries(SIGNALS).find(([, v]) => v === n);
  if (found) return found[0];
  if (n >= SIGRTMIN && n <= SIGRTMAX) return n === SIGRTMIN ? 'SIGRTMIN' : `SIGRTMIN+${n - SIGRTMIN}`;
  return `signal ${n}`;
}
