// Two plotly.js bundles with only the traces report.html draws, built with plotly.js's own esbuild
// settings (its esbuild-config.js): `Plotly` (2-D: scatter, scattergl, heatmap, bar) is evaluated when
// the page opens; `Plotly3d` (the same plus scatter3d) only when a 3-D map is near the screen.
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import esbuild from "esbuild";
import { environmentPlugin } from "esbuild-plugin-environment";
import { glsl } from "esbuild-plugin-glsl";
import InlineCSSPlugin from "esbuild-plugin-inline-css";

const require = createRequire(import.meta.url);
const version = require("plotly.js/package.json").version;
const out = process.argv[2];
const bundles = { "plotly-2d": ["Plotly", ["scattergl", "heatmap", "bar"]],
                  "plotly-3d": ["Plotly3d", ["scattergl", "heatmap", "bar", "scatter3d"]] };

for (const [name, [globalName, traces]] of Object.entries(bundles)) {
  const entry = `var P = require("plotly.js/lib/core");\nP.register([${traces.map((t) => `require("plotly.js/lib/${t}")`).join(", ")}]);\nmodule.exports = P;\n`;
  const result = await esbuild.build({
    stdin: { contents: entry, resolveDir: process.cwd() }, write: false, format: "iife", globalName, bundle: true,
    minify: true, target: "es2016", legalComments: "none",
    banner: { js: `/* plotly.js v${version}, traces: scatter, ${traces.join(", ")} (mnist_ae tools/plotly) */` },
    plugins: [InlineCSSPlugin(), glsl({ minify: true }), environmentPlugin({ NODE_DEBUG: false })],
    alias: { regl: "@plotly/regl", stream: "stream-browserify" }, define: { global: "window", "define.amd": "false" },
  });
  const js = result.outputFiles[0].contents;
  writeFileSync(`${out}/${name}.min.js.gz`, gzipSync(js, { level: 9 }));
  console.log(`${name}: ${(js.length / 1e6).toFixed(2)} MB, gzipped into ${out}/${name}.min.js.gz`);
}
