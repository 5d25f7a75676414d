/**
 * Shell completion scripts for bash, zsh and fish, generated from the commander tree, so that a
 * new command or option completes without anyone editing a script. Each shell gets the same
 * table: for every command path (`''`, `'profile'`, `'profile build'`), its subcommands and its
 * options. The current path is found by walking the typed words and keeping those that extend a
 * known path, which skips option values and arguments without knowing which options take one.
 */
import type { Command } from 'commander';
import { commandNodes, visibleCommands as visible, visibleOptions as optionsOf, type CommandNode as Node } from './command-tree';

export const COMPLETION_SHELLS = ['bash', 'zsh', 'fish'] as const;
export type CompletionShell = (typeof COMPLETION_SHELLS)[number];

/** Every flag spelling of a command: its options', and --help, which commander adds on its own. */
function flagsOf(cmd: Command): string[] {
  const flags = optionsOf(cmd).flatMap((o) => [o.short, o.long].filter((f): f is string => f !== undefined));
  return [...flags, '-h', '--help'];
}

/** Single-quoted for bash and zsh: nothing inside is expanded. */
function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Single-quoted for fish, where \ and ' are escaped inside quotes. */
function fishQuote(s: string): string {
  return `'${s.replace(/[\\']/g, (c) => '\\' + c)}'`;
}

/** The shell functions bash and zsh share: which paths are commands, and the words each offers. */
function posixTables(name: string, all: Node[]): string {
  const known = all.filter((n) => n.path).map((n) => shQuote(n.path)).join('|');
  const words = all
    .map((n) => `    ${shQuote(n.path)}) printf '%s\\n' ${[...visible(n.command).map((c) => c.name()), ...flagsOf(n.command)].map(shQuote).join(' ')} ;;`)
    .join('\n');
  return [
    `_${name}_known() {`,
    `  case "$1" in`,
    `    ${known}) return 0 ;;`,
    `  esac`,
    `  return 1`,
    `}`,
    ``,
    `_${name}_words() {`,
    `  case "$1" in`,
    words,
    `  esac`,
    `}`,
  ].join('\n');
}

function bashScript(name: string, all: Node[]): string {
  return [
    `# bash completion for ${name}: source it, or put it in ~/.local/share/bash-completion/completions/${name}`,
    posixTables(name, all),
    ``,
    `_${name}() {`,
    `  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" next i`,
    `  for ((i = 1; i < COMP_CWORD; i++)); do`,
    `    next="\${path:+$path }\${COMP_WORDS[i]}"`,
    `    if _${name}_known "$next"; then path="$next"; fi`,
    `  done`,
    `  local IFS=$'\\n'`,
    `  COMPREPLY=($(compgen -W "$(_${name}_words "$path")" -- "$cur"))`,
    `}`,
    `complete -o default -F _${name} ${name}`,
    ``,
  ].join('\n');
}

function zshScript(name: string, all: Node[]): string {
  return [
    `#compdef ${name}`,
    `# zsh completion for ${name}: put it in a directory of $fpath as _${name}, or source it after compinit`,
    posixTables(name, all),
    ``,
    `_${name}() {`,
    `  local path_="" next i`,
    `  local -a candidates`,
    `  for ((i = 2; i < CURRENT; i++)); do`,
    `    next="\${path_:+$path_ }\${words[i]}"`,
    `    if _${name}_known "$next"; then path_="$next"; fi`,
    `  done`,
    `  candidates=("\${(@f)$(_${name}_words "$path_")}")`,
    `  compadd -a candidates`,
    `  _files`,
    `}`,
    ``,
    `if [[ $zsh_eval_context[-1] == loadautofunc ]]; then`,
    `  _${name} "$@"`,
    `else`,
    `  compdef _${name} ${name}`,
    `fi`,
    ``,
  ].join('\n');
}

function fishScript(name: string, all: Node[]): string {
  const fn = `__${name}_path_is`;
  const known = all.filter((n) => n.path).map((n) => fishQuote(n.path)).join(' ');
  const lines = [
    `# fish completion for ${name}: put it in ~/.config/fish/completions/${name}.fish`,
    `function ${fn} --description 'whether the command path typed so far is the argument'`,
    `  set -l known ${known}`,
    `  set -l path ''`,
    `  for word in (commandline -opc)[2..-1]`,
    `    set -l next (string trim -- "$path $word")`,
    `    if contains -- $next $known`,
    `      set path $next`,
    `    end`,
    `  end`,
    `  test "$path" = "$argv[1]"`,
    `end`,
    `complete -c ${name} -f`,
  ];
  for (const n of all) {
    const when = `-n ${fishQuote(`${fn} ${fishQuote(n.path)}`)}`;
    for (const c of visible(n.command)) lines.push(`complete -c ${name} ${when} -a ${fishQuote(c.name())} -d ${fishQuote(c.description())}`);
    for (const o of optionsOf(n.command)) {
      const spell = [o.short && `-s ${o.short.slice(1)}`, o.long && `-l ${o.long.slice(2)}`].filter(Boolean).join(' ');
      lines.push(`complete -c ${name} ${when} ${spell}${o.required || o.optional ? ' -r -F' : ''} -d ${fishQuote(o.description)}`);
    }
    lines.push(`complete -c ${name} ${when} -s h -l help -d 'show the help'`);
  }
  return lines.join('\n') + '\n';
}

/** The completion script for `shell`, covering `program` and every command below it. */
export function completionScript(program: Command, shell: CompletionShell): string {
  const all = commandNodes(program);
  const name = program.name();
  if (shell === 'bash') return bashScript(name, all);
  if (shell === 'zsh') return zshScript(name, all);
  return fishScript(name, all);
}
