/**
 * Progress through a fixed list of named steps, for a long operation whose parts take unlike times
 * (a CLI shows `2/5 steps: IDT`). Each call of the returned function announces the next step.
 */

/** `done` steps of `total` are over and `step` is starting. */
export type StepProgress = (done: number, total: number, step: string) => void;

export function stepper(names: readonly string[], onProgress?: StepProgress): () => void {
  let done = 0;
  return () => {
    if (done < names.length) onProgress?.(done, names.length, names[done]!);
    done++;
  };
}
