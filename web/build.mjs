// Build the page into dist/: the page's script and the SEAL worker as ES modules (esbuild),
// and the static files. `npm run build` (scripts/install.sh runs it after `npm ci`).
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist");
cpSync("static", "dist", { recursive: true });
await build({
  entryPoints: { main: "src/main.ts", "seal-worker": "src/seal-worker.ts" },
  bundle: true,
  format: "esm",
  target: "es2022",
  outdir: "dist",
  minify: true,
  sourcemap: true,
  logLevel: "warning",
});
