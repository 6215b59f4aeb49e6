// tidemark console: charts of query results, drawn by the vendored uPlot
// (assets/vendor/uplot). Values arrive as text (the server's display of each cell);
// they are parsed here into numbers and instants, never put into the page as HTML.
'use strict';

const PALETTE = ['#0b6e99', '#d9730d', '#1a7f37', '#cf222e', '#8250df', '#9a6700', '#1b7c83', '#bf3989'];

// An instant as the server writes it (2026-10-01, 2026-10-01T12:00:00, with or
// without a zone), in seconds since 1970 UTC; NaN for anything else.
const INSTANT = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?(Z|[+-]\d{2}:?\d{2})?$/;
function instantSeconds(v) {
  const m = v == null ? null : INSTANT.exec(v);
  if (!m) return NaN;
  return Date.parse(m[1] + 'T' + (m[2] || '00:00:00') + (m[3] || 'Z')) / 1000;
}

function numberOf(v) {
  if (v == null || v === '') return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

// How the x column reads: 'time' (every value an instant), 'number', or 'category'.
function xKind(values) {
  const present = values.filter((v) => v != null);
  if (present.length && present.every((v) => !Number.isNaN(instantSeconds(v)))) return 'time';
  if (present.length && present.every((v) => numberOf(v) !== null)) return 'number';
  return 'category';
}

// One result as { key(x text) -> [y values] }, keeping the result's order.
function byX(result, x, ys) {
  const xi = result.columns.indexOf(x);
  const yi = ys.map((y) => result.columns.indexOf(y));
  if (xi < 0 || yi.some((i) => i < 0)) {
    throw new Error('the result has no column ' + [x, ...ys].filter((c) => !result.columns.includes(c)).join(', '));
  }
  const out = new Map();
  for (const row of result.rows) out.set(row[xi], yi.map((i) => numberOf(row[i])));
  return out;
}

// uPlot's data and series for `now` (and `compare`, drawn dashed on the same x):
// both results are aligned on their x values.
function chartModel(spec, now, compare) {
  const a = byX(now, spec.x, spec.y);
  const b = compare ? byX(compare, spec.x, spec.y) : new Map();
  const keys = [...a.keys()];
  for (const k of b.keys()) if (!a.has(k)) keys.push(k);
  const kind = xKind(keys);
  let xs;
  if (kind === 'time') {
    keys.sort((p, q) => instantSeconds(p) - instantSeconds(q));
    xs = keys.map(instantSeconds);
  } else if (kind === 'number') {
    keys.sort((p, q) => Number(p) - Number(q));
    xs = keys.map(Number);
  } else {
    xs = keys.map((_, i) => i);
  }
  const data = [xs];
  const series = [{ label: spec.x }];
  const nowLabel = spec.nowLabel || '';
  spec.y.forEach((y, j) => {
    data.push(keys.map((k) => (a.has(k) ? a.get(k)[j] : null)));
    series.push(seriesOf(spec.kind, y + nowLabel, PALETTE[j % PALETTE.length], false));
  });
  if (compare) {
    spec.y.forEach((y, j) => {
      data.push(keys.map((k) => (b.has(k) ? b.get(k)[j] : null)));
      series.push(seriesOf(spec.kind, y + (spec.compareLabel || ' (then)'), PALETTE[j % PALETTE.length], true));
    });
  }
  return { kind, keys, data, series };
}

function seriesOf(kind, label, color, dashed) {
  const s = { label, stroke: color, width: 2, spanGaps: kind === 'line' };
  if (dashed) {
    s.dash = [6, 4];
    s.stroke = color + '99';
  }
  if (kind === 'area') s.fill = color + (dashed ? '18' : '30');
  if (kind === 'bar') {
    s.fill = color + (dashed ? '55' : 'aa');
    s.width = 1;
    s.paths = uPlot.paths.bars({ size: [dashed ? 0.45 : 0.7, 64], align: 0 });
    s.points = { show: false };
  }
  return s;
}

// Draw a chart into `box` (replacing what it held): spec { kind, x, y: [..],
// nowLabel, compareLabel }, results as the API answers them ({ columns, rows }).
function drawChart(box, spec, now, compare) {
  const m = chartModel(spec, now, compare);
  // The box's inner width (its padding and border left out), so nothing overflows.
  const width = Math.max(320, (box.clientWidth || 640) - 12);
  const opts = {
    width,
    height: spec.height || 300,
    // Bars and areas are read against zero: their y axis includes it.
    scales: {
      x: { time: m.kind === 'time' },
      y: spec.kind === 'line' ? {} : { range: (u, lo, hi) => uPlot.rangeNum(Math.min(0, lo), Math.max(0, hi), 0.1, true) },
    },
    series: m.series,
    // Room for the widest y label (uPlot measures nothing itself), and x labels
    // spaced so instants do not run into each other.
    axes: [{ space: 80 }, { size: (u, values) => 24 + 8 * Math.max(4, ...(values || []).map((v) => String(v).length)) }],
    legend: { live: true },
  };
  if (m.kind === 'category') {
    const labels = m.keys.map((k) => (k == null ? 'NULL' : String(k)));
    opts.scales.x.range = (u, lo, hi) => [lo - 0.5, hi + 0.5];
    opts.axes[0] = { space: 40, splits: () => labels.map((_, i) => i), values: (u, splits) => splits.map((i) => labels[i] || '') };
  }
  if (spec.kind === 'bar' && m.kind !== 'category') {
    opts.scales.x.range = (u, lo, hi) => {
      // Half a step each side; one bar alone gets half a day (instants) or 0.5.
      const one = m.kind === 'time' ? 43200 : 0.5;
      const pad = m.data[0].length > 1 ? (hi - lo) / (m.data[0].length - 1) / 2 : one;
      return [lo - pad, hi + pad];
    };
  }
  box.replaceChildren();
  return new uPlot(opts, m.data, box);
}
