// charts.js: uPlot charts (vendor/uPlot.iife.min.js, the global uPlot).

import { h } from "./dom.js";

// palette colors series in order.
export const palette = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#475569", "#ea580c"];

// chartBox is a titled container for one chart.
export function chartBox(title, extra) {
  const plot = h("div", { class: "plot" });
  const box = h("figure", { class: "chart" }, h("figcaption", {}, h("span", {}, title), extra || null), plot);
  box.plot = plot;
  return box;
}

// sizeOf is the plot size that fits el.
function sizeOf(el) {
  return { width: Math.max(280, (el.clientWidth || el.parentElement?.clientWidth || 640) - 4), height: 220 };
}

// follow resizes chart u with its element; the returned function stops.
function follow(u, el) {
  const ro = new ResizeObserver(() => {
    const s = sizeOf(el);
    if (s.width !== u.width) u.setSize(s);
  });
  ro.observe(el);
  return () => {
    ro.disconnect();
    u.destroy();
  };
}

// integerIncrs are the y-axis steps of counts: no 0.5 call.
const integerIncrs = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 2.5e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12];

// timeChart draws lines over time into el: times in Unix seconds, series
// [{label, values}] with one value (or null) per time. fmt formats the
// y values in the legend and axis; integer keeps the axis on whole
// numbers. It returns the function that removes the chart.
export function timeChart(el, times, series, fmt = (v) => String(v), { integer = false } = {}) {
  const opts = {
    ...sizeOf(el),
    cursor: { drag: { x: true, y: false } },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [{}, { values: (u, vals) => vals.map((v) => (v == null ? "" : fmt(v))), size: 70, incrs: integer ? integerIncrs : undefined }],
    series: [{}, ...series.map((s, i) => ({
      label: s.label,
      stroke: palette[i % palette.length],
      width: 2,
      dash: s.dash,
      spanGaps: false,
      points: { show: times.length < 40 },
      value: (u, v) => (v == null ? "–" : fmt(v)),
    }))],
  };
  const u = new uPlot(opts, [times, ...series.map((s) => s.values)], el);
  return follow(u, el);
}

// barChart draws grouped bars, one group per category label, one bar per
// series [{label, values}] (one value per category). uPlot's data share one
// x array, so each bar gets its own x (group i, series j at i*(n+1)+j) and
// the other series are null there. It returns the function that removes
// the chart.
export function barChart(el, labels, series, fmt = (v) => String(v), xLabel = "") {
  const n = series.length;
  const xs = [];
  const data = series.map(() => []);
  labels.forEach((_, i) => {
    for (let j = 0; j < n; j++) {
      xs.push(i * (n + 1) + j);
      series.forEach((s, k) => data[k].push(k === j ? s.values[i] ?? 0 : null));
    }
  });
  const center = (i) => i * (n + 1) + (n - 1) / 2;
  const category = (x) => labels[Math.floor((x + 0.5) / (n + 1))];
  const opts = {
    ...sizeOf(el),
    cursor: { points: { show: false }, drag: { x: false, y: false } },
    scales: {
      x: { time: false, range: () => [-1, labels.length * (n + 1) - 1] },
      y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] },
    },
    axes: [
      {
        splits: () => labels.map((_, i) => center(i)),
        values: (u, vals) => vals.map((v) => short(category(v) ?? "")),
        grid: { show: false },
        size: 40,
      },
      { values: (u, vals) => vals.map((v) => fmt(v)), size: 60, incrs: integerIncrs },
    ],
    series: [
      { label: xLabel, value: (u, v) => (v == null ? "" : category(v) ?? "") },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: palette[i % palette.length],
        fill: palette[i % palette.length] + "cc",
        width: 1,
        paths: uPlot.paths.bars({ size: [0.9, 60], align: 0 }),
        points: { show: false },
        value: (u, v) => (v == null ? "–" : fmt(v)),
      })),
    ],
  };
  const u = new uPlot(opts, [xs, ...data], el);
  return follow(u, el);
}

function short(s) {
  s = String(s);
  return s.length > 18 ? s.slice(0, 17) + "…" : s;
}
