/** What the integrity VM tests do to a guest from outside and inside it. */
import { InjectionMemory } from '../../lib/inject/guest-memory';
import type { Vm } from '../../lib/vm';
import { guestRun, type VmEnv } from './vm';

/** Writes kernel memory at a virtual address from outside (physical write through the gdbstub); returns the old bytes. */
export async function poke(vm: Vm, va: bigint, data: Buffer): Promise<Buffer> {
  await vm.pause();
  const kernel = await vm.kernel();
  const old = await kernel.space.read(va, data.length);
  const mem = new InjectionMemory(await vm.memory(), await vm.gdb());
  await mem.write((await kernel.space.translate(va)).physical, data);
  kernel.invalidate();
  return old;
}

/** Starts `cmd` in the background in the guest and returns its pid. */
export async function guestPid(env: VmEnv, cmd: string): Promise<number> {
  // a moment for the child to be through its execve: caught in the middle, it has no code mapped
  const r = await guestRun(env, `${cmd} </dev/null >/dev/null 2>&1 & p=$!; sleep 0.5; echo $p`);
  return Number(r.output.trim().split('\n').pop());
}
