import { EventEmitter } from 'node:events';

/**
 * An EventEmitter whose event names and listener arguments are checked by the compiler.
 * `Events` maps each event name to the tuple of its listener's arguments.
 */
export class TypedEmitter<Events extends { [K in keyof Events]: unknown[] }> {
  readonly #inner = new EventEmitter();

  on<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): this {
    this.#inner.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  once<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): this {
    this.#inner.once(event, listener as (...args: unknown[]) => void);
    return this;
  }

  off<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): this {
    this.#inner.off(event, listener as (...args: unknown[]) => void);
    return this;
  }

  protected emit<K extends keyof Events & string>(event: K, ...args: Events[K]): boolean {
    return this.#inner.emit(event, ...args);
  }

  listenerCount<K extends keyof Events & string>(event: K): number {
    return this.#inner.listenerCount(event);
  }
}
