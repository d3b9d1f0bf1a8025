// After `vite build`: a gzipped twin (`x.js.gz`) of every compressible file of dist/, embedded
// into the binary beside it (crates/server/build.rs) and sent to clients that accept gzip.
// Prints the total gzipped size of the app (the figure the issue bounds).
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';

const dist = new URL('../dist/', import.meta.url).pathname;
const compressible = /\.(js|mjs|css|html|svg|json|txt|map)$/;
let raw = 0;
let gz = 0;
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (compressible.test(name)) {
      const body = readFileSync(p);
      const zipped = gzipSync(body, { level: 9 });
      raw += body.length;
      gz += zipped.length;
      if (zipped.length < body.length) writeFileSync(`${p}.gz`, zipped);
      console.log(`  ${relative(dist, p).padEnd(40)} ${(body.length / 1024).toFixed(1).padStart(8)} KiB  gzip ${(zipped.length / 1024).toFixed(1).padStart(7)} KiB`);
    }
  }
}
walk(dist);
console.log(`web app: ${(raw / 1024).toFixed(1)} KiB, ${(gz / 1024).toFixed(1)} KiB gzipped`);
