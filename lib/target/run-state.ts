/**
 * The VM's run state: the one place in lib/ that sends QMP `stop`, `cont` and `query-status`.
 * Several parts of vmictl stop the VM and each must restart only what it is entitled to; with one
 * owner, who may undo which stop is decided here and nowhere else.
 *
 * Two kinds of "not running" are told apart. `paused` is what `stop` (ours or another client's)
 * leaves; a guest panic, a shutdown, a debug stop (a gdbstub breakpoint or interrupt) and the
 * others are the guest's or a debugger's doing, and only a caller who knows the VM ran before it
 * may continue those.
 */
import { ProtocolError } from '../errors';
import type { QmpClient } from '../transport/qmp';
import type { CallOptions } from '../util/deadline';

/** What `query-status` says. `status` is QEMU's RunState name: 'running', 'paused', 'debug', 'guest-panicked', 'shutdown'… */
export interface RunStatus {
  running: boolean;
  status: string;
}

export class RunState {
  constructor(readonly qmp: QmpClient) {}

  async status(opts: CallOptions = {}): Promise<RunStatus> {
    const reply = await this.qmp.execute<unknown>('query-status', undefined, opts);
    const r = reply as Partial<RunStatus> | null;
    // a wrong reply must not read as "stopped": that would make a caller continue a VM it should not
    if (typeof r !== 'object' || r === null || typeof r.running !== 'boolean' || typeof r.status !== 'string') {
      throw new ProtocolError('query-status returned no running flag and status', JSON.stringify(reply));
    }
    return { running: r.running, status: r.status };
  }

  async running(opts: CallOptions = {}): Promise<boolean> {
    return (await this.status(opts)).running;
  }

  /** Stops the VM if it runs; true when this call stopped it (and so has a stop to undo). */
  async stop(opts: CallOptions = {}): Promise<boolean> {
    if (!(await this.running(opts))) return false;
    await this.qmp.execute('stop', undefined, opts);
    return true;
  }

  /** Continues the VM without looking: for a caller that knows it stopped it. */
  async cont(opts: CallOptions = {}): Promise<void> {
    await this.qmp.execute('cont', undefined, opts);
  }

  /**
   * Continues the VM only from `paused`, the state a `stop` leaves; a guest panic, a shutdown or
   * a debug stop is left for whoever caused it. True when it continued.
   */
  async contIfPaused(opts: CallOptions = {}): Promise<boolean> {
    const st = await this.status(opts);
    if (st.running || st.status !== 'paused') return false;
    await this.cont(opts);
    return true;
  }

  /**
   * Continues the VM from any stopped state: for a caller that knows the VM ran before it, and
   * that whatever stopped it since was part of its own operation. True when it continued.
   */
  async contIfStopped(opts: CallOptions = {}): Promise<boolean> {
    if (await this.running(opts)) return false;
    await this.cont(opts);
    return true;
  }

  /**
   * Runs `fn` with the VM stopped, and continues it afterwards (also when `fn` throws) only if
   * this call stopped it. A failure to continue is what the caller sees, over `fn`'s own error:
   * a VM left stopped is what it must act on.
   */
  async whileStopped<T>(fn: () => Promise<T>, opts: CallOptions = {}): Promise<T> {
    const stopped = await this.stop(opts);
    try {
      return await fn();
    } finally {
      // the restart is the cleanup after an abort, not part of what the signal cancels
      if (stopped) await this.cont({ timeout: opts.timeout });
    }
  }
}
