/**
 * Containers: what a task record holds (model), which runtime a cgroup path names (runtime), how
 * processes group into containers (group) and how a user's spec finds one (resolve).
 */
export * from './model';
export * from './runtime';
export * from './group';
export * from './resolve';
export * from './collect';
export * from './list';
