import t from 'tap';
import { renderTable, displayWidth, truncateCell, type Column } from '../../cli/render/table';

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
  t.equal(truncateCell('日本語テキスト', 7), '日本語…');
  t.equal(truncateCell('abc', 3), 'abc');
  t.equal(truncateCell('abcd', 3), 'ab…');
  const out = renderTable([{ header: 'N' }, { header: 'X' }], [['日本', 'a'], ['ab', 'b']], { truncate: false });
  t.equal(out, 'N      X\n日本   a\nab     b\n');
});
