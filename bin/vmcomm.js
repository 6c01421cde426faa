#!/usr/bin/env node
// The `vmcomm` command. The implementation is the compiled TypeScript in dist/ (`npm run build`);
// this shim only loads it and says so clearly when it has not been built.
let cli;
try {
  cli = await import('../dist/lib/launch/cli.js');
} catch (error) {
  if (error && error.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('cli.js')) {
    process.stderr.write('vmcomm: the compiled library is missing (dist/lib/launch/cli.js); run `npm run build` in the vmcomm package\n');
    process.exit(1);
  }
  throw error;
}
await cli.runCli(process.argv.slice(2));
