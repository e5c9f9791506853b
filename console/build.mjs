// Builds the console into dist/ (committed, so installs need no npm): one minified bundle with
// Leaflet and the Natural Earth 110m country outlines inlined; nothing is fetched from a CDN.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: { console: "src/main.js" },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  outdir: "dist",
  loader: { ".png": "dataurl", ".svg": "dataurl" },
  legalComments: "none",
  logLevel: "info",
});
copyFileSync("src/index.html", "dist/index.html");
