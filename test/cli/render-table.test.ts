import t from 'tap';
import { renderTable, type Column } from '../../cli/render/table';
import { escapeForTerminal } from '../../lib/util/escape';
import { displayWidth, loadDisplayWidth, truncateToWidth } from '../../cli/render/width';

t.before(loadDisplayWidth);

const COLS: Column[] = [{ header: 'ID' }, { header: 'PID', align: 'right' }, { header: 'NAME' }];

t.test('columns are aligned under their headers, three spaces apart, no trailing blanks', async (t) => {
  const out = renderTable(COLS, [['a', '1', 'short'], ['longer-id', '12345', 'x']], { truncate: false });
  t.equal(
    out,
    'ID            PID   NAME\n' + //
      'a               1   short\n' +
      'longer-id   12345   x\n',
  );
  const lines = out.trimEnd().split('\n');
  for (const l of lines) t.notMatch(l, / $/, 'no trailing blank');
  t.equal(lines[0]!.indexOf('NAME'), lines[1]!.indexOf('short'), 'last column starts at the same place');
  t.equal(lines[1]!.indexOf('1') + 1, lines[0]!.indexOf('PID') + 3, 'right-aligned numbers end under the header end');
});

t.test('an empty table is its header', async (t) => {
  t.equal(renderTable(COLS, [], { truncate: false }), 'ID   PID   NAME\n');
});

t.test('cells are escaped before they are measured', async (t) => {
  const out = renderTable([{ header: 'A' }, { header: 'B' }], [['x\x1b[2Jy', 'z'], ['q', 'w']], { truncate: false });
  t.notOk(out.includes('\x1b'), 'no raw ESC');
  t.equal(out, 'A           B\nx\\x1b[2Jy   z\nq           w\n');
});

t.test('not a terminal: nothing is cut', async (t) => {
  const long = 'x'.repeat(300);
  const out = renderTable([{ header: 'A', maxWidth: 10 }, { header: 'B' }], [[long, long]], { truncate: false, width: 40 });
  t.equal(out.split('\n')[1], `${long}   ${long}`);
});

t.test('a terminal: cells cut at maxWidth and the last column at the terminal width, with …', async (t) => {
  const out = renderTable([{ header: 'A', maxWidth: 10 }, { header: 'B' }], [['abcdefghijklmnop', 'x'.repeat(100)]], { truncate: true, width: 40 });
  const lines = out.trimEnd().split('\n');
  t.equal(lines[1], 'abcdefghi…   ' + 'x'.repeat(26) + '…');
  for (const l of lines) t.ok(displayWidth(l) <= 40, 'fits the terminal');
  t.equal(lines[0], 'A            B');
});

t.test('the last column is never cut below its header or a few columns', async (t) => {
  const out = renderTable([{ header: 'AAAAAAAAAA' }, { header: 'COMMAND' }], [['a', 'a long command line']], { truncate: true, width: 12 });
  t.equal(out.split('\n')[1], 'a            a long…', 'cut to the width of COMMAND');
});

t.test('display width: wide and combining characters', async (t) => {
  t.equal(displayWidth('abc'), 3);
  t.equal(displayWidth('日本'), 4);
  t.equal(displayWidth('e\u0301'), 1);
  t.equal(truncateToWidth('日本語テキスト', 7), '日本語…');
  t.equal(truncateToWidth('abc', 3), 'abc');
  t.equal(truncateToWidth('abcd', 3), 'ab…');
  const out = renderTable([{ header: 'N' }, { header: 'X' }], [['日本', 'a'], ['ab', 'b']], { truncate: false });
  t.equal(out, 'N      X\n日本   a\nab     b\n');
});

t.test('display width: emoji, CJK, combining marks and ZWJ sequences take the columns a terminal gives them', async (t) => {
  t.equal(displayWidth('🚀'), 2, 'an emoji is two columns');
  t.equal(displayWidth('漢字'), 4, 'CJK ideographs are two columns each');
  t.equal(displayWidth('e\u0301'), 1, 'a combining accent adds nothing');
  t.equal(displayWidth('👩\u200d💻'), 2, 'a ZWJ sequence is one glyph');
  t.equal(displayWidth('👨\u200d👩\u200d👧\u200d👦'), 2, 'a four-person family is one glyph');
  t.equal(truncateToWidth('👩\u200d💻👩\u200d💻👩\u200d💻', 5), '👩\u200d💻👩\u200d💻…', 'cut between graphemes, never inside one');
  t.equal(truncateToWidth('e\u0301e\u0301e\u0301e\u0301', 3), 'e\u0301e\u0301…', 'an accent stays with its letter');
  t.equal(truncateToWidth('🚀🚀🚀', 4), '🚀…', 'a wide glyph that does not fit is left out whole');
});

/** The display column where `what` starts in `line` (its last occurrence), and where it ends. */
function span(line: string, what: string): { start: number; end: number } {
  const at = line.lastIndexOf(what);
  const start = displayWidth(line.slice(0, at));
  return { start, end: start + displayWidth(what) };
}

t.test('wide, combining and hostile names keep the columns aligned', async (t) => {
  const names = ['🚀', '漢字', 'e\u0301te\u0301', '👩\u200d💻dev', 'evil\u009b2J\u202eeman', 'plain'];
  const cols: Column[] = [{ header: 'NAME' }, { header: 'PID', align: 'right' }, { header: 'COMMAND' }];
  const out = renderTable(cols, names.map((n, i) => [n, String(100 + i), `${n} --flag`]), { truncate: false });
  const lines = out.trimEnd().split('\n');
  t.notOk(/[\u0080-\u009f\u202a-\u202e]/.test(out), 'no raw C1 or bidi control reaches the terminal');
  t.ok(lines[5]!.startsWith('evil\\x9b2J\\u202eeman   '), 'the hostile name is printed escaped');
  const escapedWidth = displayWidth('evil\\x9b2J\\u202eeman');
  t.equal(escapedWidth, 20, 'the escaped hostile name is 20 columns');
  const pid = span(lines[0]!, 'PID');
  const command = span(lines[0]!, 'COMMAND');
  t.equal(pid.end, escapedWidth + 3 + 3, 'the first column is as wide as the widest (escaped) name');
  names.forEach((n, i) => {
    const l = lines[i + 1]!;
    t.equal(span(l, String(100 + i)).end, pid.end, `PID of ${JSON.stringify(n)} ends under the header`);
    t.equal(span(l, `${escapeForTerminal(n)} --flag`).start, command.start, `COMMAND of ${JSON.stringify(n)} starts under the header`);
  });
});

t.test('on a terminal, a wide cell is cut to the terminal width in display columns', async (t) => {
  const out = renderTable([{ header: 'N' }, { header: 'C' }], [['a', '漢字'.repeat(20)], ['b', '🚀'.repeat(20)]], { truncate: true, width: 20 });
  const lines = out.trimEnd().split('\n');
  for (const l of lines) t.ok(displayWidth(l) <= 20, `${JSON.stringify(l)} fits in 20 columns`);
  // 16 columns left: seven 2-column glyphs and the one-column '…'
  t.equal(lines[1], 'a   漢字漢字漢字漢…');
  t.equal(lines[2], 'b   🚀🚀🚀🚀🚀🚀🚀…');
});
