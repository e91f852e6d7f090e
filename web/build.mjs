// Builds the UI into internal/server/ui/dist, which the server embeds.
// The output must depend on nothing but the sources and the pinned
// packages (package-lock.json): `make ui-check` rebuilds it in CI and
// fails when it differs from what is committed.
import * as esbuild from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

process.chdir(fileURLToPath(new URL('.', import.meta.url)));
const out = '../internal/server/ui/dist';
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
// main.js imports the style sheets, so one build writes app.js and app.css.
await esbuild.build({
  entryPoints: { app: 'src/main.js' },
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome100', 'firefox100', 'safari15'],
  outdir: out,
  legalComments: 'eof',
  charset: 'utf8',
  logLevel: 'warning',
  // uPlot carries no license comment of its own; its MIT licence must go
  // with every copy, so it is served beside the bundle.
  banner: { js: '/* kubetrail web UI (web/ in the kubetrail repository). Includes uPlot, MIT License, Copyright (c) 2022 Leon Sorokin: /ui/LICENSE.uplot.txt */' },
});
copyFileSync('src/index.html', `${out}/index.html`);
copyFileSync('node_modules/uplot/LICENSE', `${out}/LICENSE.uplot.txt`);
