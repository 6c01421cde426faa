/**
 * Review: typing of waitAll / waitAny (DESIGN §2: "waitAll typed like Promise.all; waitAny → { index, value }").
 * Type-checks small snippets against lib/request.ts with the project's tsconfig, in memory.
 */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import ts from 'typescript';

const root = path.resolve(import.meta.dirname, '../..');

function typeErrors(source: string): string[] {
  const parsed = ts.getParsedCommandLineOfConfigFile(path.join(root, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined });
  if (!parsed) throw new Error('cannot read tsconfig.json');
  const virtual = path.join(root, 'tests/unit/__review_types_snippet.ts');
  const host = ts.createCompilerHost(parsed.options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, onError, create) => (path.resolve(name) === virtual ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, onError, create));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === virtual || fileExists(name);
  const program = ts.createProgram([virtual], { ...parsed.options, noEmit: true }, host);
  const file = program.getSourceFile(virtual)!;
  return ts.getPreEmitDiagnostics(program, file).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n').split('\n')[0]);
}

describe('review: waitAny / waitAll typing', () => {
  it('the checker itself reports a real type error (control)', () => {
    expect(typeErrors(`const x: number = 'no'; export { x };`)).toHaveLength(1);
  });

  it('waitAll is typed like Promise.all for mixed requests', () => {
    const errors = typeErrors(`
      import { waitAll, type Request } from '../../lib/request.js';
      declare const s: Request<string>;
      declare const n: Request<number>;
      export async function f(): Promise<[string, number]> { const [a, b] = await waitAll([s, n]); return [a, b]; }
    `);
    expect(errors).toEqual([]);
  });

  it('waitAny accepts requests of different value types (e.g. an isend and an irecv)', () => {
    const errors = typeErrors(`
      import { waitAny, type Request } from '../../lib/request.js';
      declare const sent: Request<void>;
      declare const got: Request<number>;
      declare const s: Request<string>;
      export async function f() {
        const a = await waitAny([sent, got]);
        const b = await waitAny([s, got]);
        const v: string | number = b.value;
        return [a.index, v];
      }
    `);
    expect(errors).toEqual([]);
  });
});
