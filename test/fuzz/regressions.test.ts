// Every input a fuzz run ever found a problem with (test/fuzz/corpus/<harness>/*), replayed through
// its harness: each must now end in a result or a typed error, in bounded time and memory.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { replay } from './engine';
import { HARNESSES } from './harnesses';

const CORPUS = path.join(__dirname, 'corpus');

for (const dir of fs.existsSync(CORPUS) ? fs.readdirSync(CORPUS).sort() : []) {
  t.test(dir, async (t) => {
    const h = HARNESSES.find((x) => x.name === dir);
    if (!h) {
      t.fail(`test/fuzz/corpus/${dir}: no harness of that name`);
      return;
    }
    const files = fs.readdirSync(path.join(CORPUS, dir)).sort().map((f) => path.join(CORPUS, dir, f));
    t.ok(files.length > 0, `${files.length} saved input(s)`);
    // the regression replay allows far more time than a fuzz run: the machine may be loaded
    const findings = await replay({ ...h, slowMs: 10_000 }, files);
    for (const f of findings) t.fail(`${path.basename(f.file!)}: ${f.kind}: ${f.message}`);
    t.equal(findings.length, 0, 'every saved input is handled');
    await h.close?.();
  });
}
