// The README's tables are printed from the code; this keeps them from drifting apart.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { opTypeTableMarkdown } from '../../lib/collectives/ops.js';
import { selectionTableMarkdown } from '../../lib/collectives/select.js';
import { ROOT } from '../helpers/processes.js';

const readme = readFileSync(`${ROOT}/README.md`, 'utf8');
const unindent = (t: string) => t.split('\n').map((l) => l.trim()).join('\n');

describe('README tables', () => {
  it('shows the op × element type table the code enforces', () => {
    expect(unindent(readme)).toContain(unindent(opTypeTableMarkdown()));
  });
  it('shows the algorithm selection table', () => {
    expect(unindent(readme)).toContain(unindent(selectionTableMarkdown()));
  });
});
