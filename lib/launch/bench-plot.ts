/**
 * `vmcomm bench --svg FILE`: the results as one SVG — latency and bandwidth (and the other patterns)
 * against message size, log-log, one line per backend and baseline (baselines dashed) — described in
 * Vega-Lite and rendered headless by Vega (no browser, no canvas, no native code). Both libraries are
 * imported only here, and only when a chart is asked for, so nothing else pays for loading them.
 *
 * @module
 */

import type { TopLevelSpec } from 'vega-lite';
import { BENCH_PATTERNS, unitOf, type BenchPattern, type BenchResult } from './bench-protocol.js';
import { implLabel, implsOf } from './bench-report.js';

const TITLES: { readonly [P in BenchPattern]: string } = {
  latency: 'latency (half round trip)',
  bw: 'bandwidth (window of 64)',
  bibw: 'bidirectional bandwidth',
  mbw_mr: 'multi-pair bandwidth (aggregate)',
  allreduce: 'allreduce (float32 SUM)',
  bcast: 'bcast',
  barrier: 'barrier',
};

/** Vega expression: a byte count as `512 B`, `4 KiB`, `1 MiB`. */
const BYTES_LABEL = "datum.value >= 1048576 ? (datum.value / 1048576) + ' MiB' : datum.value >= 1024 ? (datum.value / 1024) + ' KiB' : datum.value + ' B'";

/** The Vega-Lite description of the chart (exported for tests and for anyone who wants to restyle it). */
export function benchChartSpec(results: readonly BenchResult[], title: string): TopLevelSpec {
  const values = results.map((r) => ({ pattern: r.pattern, impl: r.impl, label: implLabel(r.impl), kind: r.kind, size: r.size, value: r.typical }));
  const labels = implsOf(results).map(implLabel);
  const color = { field: 'label', type: 'nominal' as const, title: null, scale: { domain: labels }, legend: { orient: 'bottom' as const, columns: 4 } };
  const dash = { field: 'kind', type: 'nominal' as const, title: null, scale: { domain: ['vmcomm', 'baseline'], range: [[1, 0], [5, 3]] }, legend: null };
  const sizes = [...new Set(results.filter((r) => r.pattern !== 'barrier').map((r) => r.size))].sort((a, b) => a - b);
  // Every other power of two on the axis (a label per power of two would collide).
  const ticks = sizes.filter((s) => Math.log2(s) % 2 === 0 || sizes.length <= 8);
  const line = (pattern: BenchPattern) => ({
    title: `${TITLES[pattern]}, ${unitOf(pattern) === 'us' ? 'µs' : 'MB/s'}`,
    width: 320,
    height: 210,
    transform: [{ filter: { field: 'pattern', equal: pattern } }],
    mark: { type: 'line' as const, point: true, strokeWidth: 1.5 },
    encoding: {
      x: { field: 'size', type: 'quantitative' as const, title: 'message size', scale: { type: 'log' as const, base: 2 }, axis: { values: ticks, labelExpr: BYTES_LABEL, labelAngle: -40 } },
      y: { field: 'value', type: 'quantitative' as const, title: unitOf(pattern) === 'us' ? 'µs (lower is better)' : 'MB/s (higher is better)', scale: { type: 'log' as const } },
      color,
      strokeDash: dash,
    },
  });
  const present = BENCH_PATTERNS.filter((p) => results.some((r) => r.pattern === p));
  const lines = present.filter((p) => p !== 'barrier').map(line);
  const rows: object[] = [];
  for (let i = 0; i < lines.length; i += 2) rows.push({ hconcat: lines.slice(i, i + 2) });
  if (present.includes('barrier')) {
    // Bars on a linear scale (a log scale has no zero for a bar to start from), each with its value.
    const axis = { field: 'label', type: 'nominal' as const, title: null, sort: labels };
    const value = { field: 'value', type: 'quantitative' as const, title: 'µs' };
    rows.push({
      title: 'barrier, µs per call (lower is better)',
      width: 320,
      height: { step: 18 },
      transform: [{ filter: { field: 'pattern', equal: 'barrier' } }],
      layer: [
        { mark: { type: 'bar' as const }, encoding: { y: axis, x: value, color } },
        { mark: { type: 'text' as const, align: 'left' as const, dx: 3 }, encoding: { y: axis, x: value, text: { field: 'value', type: 'quantitative' as const, format: '.2f' } } },
      ],
    });
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, anchor: 'start', offset: 18 },
    data: { values },
    vconcat: rows,
    resolve: { scale: { color: 'shared' } },
    // No ARIA labels per mark: they would triple the file for a picture in a README.
    config: { font: 'sans-serif', view: { stroke: '#ddd' }, aria: false },
  } as TopLevelSpec;
}

/** Renders {@link benchChartSpec} to SVG text (loads vega and vega-lite on first use). */
export async function renderBenchSvg(results: readonly BenchResult[], title: string): Promise<string> {
  const [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')]);
  const compiled = vegaLite.compile(benchChartSpec(results, title)).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
