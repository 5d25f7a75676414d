/**
 * One operation on several containers, as `docker pause a b c` does it: the containers are listed
 * once, each spec is resolved in that listing, and each is done in turn. A spec that matches
 * nothing, or an operation that fails, is that container's outcome and the rest are still done;
 * only an abort (Ctrl-C, the time limit) ends the whole batch.
 */
import type { Vm } from '../vm';
import type { ContainerList } from '../containers/list';
import type { Container } from '../containers/model';
import { findContainer, snapshot } from './snapshot';

export type BatchOutcome<T> =
  | { spec: string; container: Container; result: T }
  | { spec: string; container?: Container; error: unknown };

export async function eachContainer<T>(vm: Vm, specs: readonly string[], signal: AbortSignal | undefined, act: (c: Container, list: ContainerList) => Promise<T>): Promise<BatchOutcome<T>[]> {
  const list = await snapshot(vm, signal);
  const out: BatchOutcome<T>[] = [];
  for (const spec of specs) {
    let c: Container | undefined;
    try {
      c = findContainer(list, spec);
      out.push({ spec, container: c, result: await act(c, list) });
    } catch (error) {
      if (signal?.aborted) throw error;
      out.push({ spec, container: c, error });
    }
  }
  return out;
}
