/* Tokenomy chart: a tiny SVG chart renderer for the dashboard, no dependencies.
 *
 * Part of Tokenomy (Apache-2.0). Each element with data-chart="bars|cumulative|hbars"
 * and data-source="<id of a <script type=application/json>>" is drawn on load:
 *
 *   bars        {labels: [...], series: [{name, values: [...]}]}   stacked bars
 *   cumulative  {labels: [...], actual: [...], projected: [...], low, high, budget}
 *   hbars       {labels: [...], values: [...]}                       horizontal bars
 *
 * Values are dollars. Every mark carries a <title>, so hovering shows the number.
 */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var PALETTE = ["#2f6fdf", "#e8743b", "#19a979", "#945ecf", "#ed4a7b", "#13a4b4",
                 "#bf9b30", "#6c8893", "#9c5c2e", "#4b4b8f"];

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    for (var k in attrs) { node.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function text(parent, x, y, str, attrs) {
    var a = attrs || {};
    a.x = x; a.y = y;
    var t = el("text", a, parent);
    t.textContent = str;
    return t;
  }

  function title(node, str) {
    var t = el("title", {}, node);
    t.textContent = str;
  }

  function usd(v) {
    if (v === 0) { return "$0"; }
    var places = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 1 ? 2 : 4;
    return "$" + v.toLocaleString("en-US", {minimumFractionDigits: places,
                                           maximumFractionDigits: places});
  }

  // A "nice" axis: 0 to a round maximum in about four steps.
  function ticks(max) {
    if (!(max > 0)) { return [0, 1]; }
    var raw = max / 4, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 2.5, 5, 10].map(function (m) { return m * mag; })
                                  .filter(function (s) { return s >= raw; })[0];
    var out = [];
    for (var v = 0; v < max + step * 0.999; v += step) { out.push(v); }
    return out;
  }

  // Draw at the container's own width, so text is never scaled down.
  function width(container) {
    return Math.max(320, Math.round(container.getBoundingClientRect().width) || 760);
  }

  function frame(container, width, height) {
    var svg = el("svg", {viewBox: "0 0 " + width + " " + height, role: "img",
                         "class": "tk-chart", preserveAspectRatio: "xMidYMid meet"});
    container.appendChild(svg);
    return svg;
  }

  function yAxis(svg, box, top) {
    var ys = ticks(top), max = ys[ys.length - 1];
    ys.forEach(function (v) {
      var y = box.y + box.h - (v / max) * box.h;
      el("line", {x1: box.x, x2: box.x + box.w, y1: y, y2: y, "class": "tk-grid"}, svg);
      text(svg, box.x - 6, y + 4, usd(v), {"text-anchor": "end", "class": "tk-tick"});
    });
    return max;
  }

  function xLabels(svg, box, labels, slot) {
    var every = Math.max(1, Math.ceil(labels.length / 10));
    labels.forEach(function (label, i) {
      if (i % every !== 0 && i !== labels.length - 1) { return; }
      text(svg, box.x + slot * (i + 0.5), box.y + box.h + 16, label.slice(5),
           {"text-anchor": "middle", "class": "tk-tick"});
    });
  }

  function legend(container, names) {
    var ul = document.createElement("ul");
    ul.className = "tk-legend";
    names.forEach(function (name, i) {
      var li = document.createElement("li");
      var sw = document.createElement("span");
      sw.className = "tk-swatch tk-c" + (i % PALETTE.length);
      li.appendChild(sw);
      li.appendChild(document.createTextNode(name));
      ul.appendChild(li);
    });
    container.appendChild(ul);
  }

  function bars(container, data) {
    var W = width(container), H = 280, box = {x: 64, y: 12, w: W - 76, h: H - 44};
    var svg = frame(container, W, H), n = data.labels.length;
    var sums = data.labels.map(function (_, i) {
      return data.series.reduce(function (s, ser) { return s + ser.values[i]; }, 0);
    });
    var max = yAxis(svg, box, Math.max.apply(null, sums.concat([0])));
    var slot = box.w / Math.max(n, 1), bw = Math.max(1, slot * 0.72);
    data.labels.forEach(function (label, i) {
      var base = box.y + box.h;
      data.series.forEach(function (ser, s) {
        var v = ser.values[i];
        if (!(v > 0)) { return; }
        var h = (v / max) * box.h;
        var r = el("rect", {x: box.x + slot * i + (slot - bw) / 2, y: base - h, width: bw,
                            height: h, fill: PALETTE[s % PALETTE.length],
                            "class": "tk-bar", "data-series": ser.name, "data-label": label,
                            "data-value": v}, svg);
        title(r, label + " · " + ser.name + ": " + usd(v));
        base -= h;
      });
    });
    xLabels(svg, box, data.labels, slot);
    legend(container, data.series.map(function (s) { return s.name; }));
  }

  function cumulative(container, data) {
    var W = width(container), H = 240, box = {x: 64, y: 12, w: W - 76, h: H - 44};
    var svg = frame(container, W, H), n = data.labels.length;
    var top = Math.max(data.high || 0, data.budget || 0,
                       Math.max.apply(null, data.actual.concat(data.projected, [0])));
    var max = yAxis(svg, box, top);
    var slot = box.w / Math.max(n, 1);
    function pt(i, v) { return [box.x + slot * (i + 0.5), box.y + box.h - (v / max) * box.h]; }
    function path(values, cls, label) {
      var d = "", started = false;
      values.forEach(function (v, i) {
        if (v === null) { return; }
        var p = pt(i, v);
        d += (started ? "L" : "M") + p[0].toFixed(1) + "," + p[1].toFixed(1);
        started = true;
      });
      if (d) { title(el("path", {d: d, "class": cls}, svg), label); }
    }
    if (data.budget) {
      var yb = pt(0, data.budget)[1];
      el("line", {x1: box.x, x2: box.x + box.w, y1: yb, y2: yb, "class": "tk-budget"}, svg);
      text(svg, box.x + box.w, yb - 4, "budget " + usd(data.budget),
           {"text-anchor": "end", "class": "tk-tick"});
    }
    path(data.actual, "tk-line", "spend to date");
    path(data.projected, "tk-line tk-projected", "projected");
    if (data.high !== null && data.high !== undefined) {
      var lo = pt(n - 1, data.low), hi = pt(n - 1, data.high);
      var band = el("line", {x1: lo[0], x2: hi[0], y1: lo[1], y2: hi[1], "class": "tk-band"}, svg);
      title(band, "month end: " + usd(data.low) + " to " + usd(data.high));
    }
    xLabels(svg, box, data.labels, slot);
  }

  function hbars(container, data) {
    var row = 26, W = width(container), H = Math.max(row * data.labels.length + 8, 40);
    var box = {x: 110, y: 4, w: W - 200};
    var svg = frame(container, W, H);
    var max = Math.max.apply(null, data.values.concat([0])) || 1;
    data.labels.forEach(function (label, i) {
      var y = box.y + i * row, w = Math.max(1, (data.values[i] / max) * box.w);
      text(svg, box.x - 8, y + 16, label, {"text-anchor": "end", "class": "tk-tick"});
      var r = el("rect", {x: box.x, y: y + 4, width: w, height: row - 10,
                          fill: PALETTE[i % PALETTE.length], "class": "tk-bar",
                          "data-label": label, "data-value": data.values[i]}, svg);
      title(r, label + ": " + usd(data.values[i]));
      text(svg, box.x + w + 6, y + 16, usd(data.values[i]), {"class": "tk-tick"});
    });
  }

  var KINDS = {bars: bars, cumulative: cumulative, hbars: hbars};

  function draw() {
    var nodes = document.querySelectorAll("[data-chart]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i], source = document.getElementById(node.getAttribute("data-source"));
      var kind = KINDS[node.getAttribute("data-chart")];
      if (!source || !kind) { continue; }
      kind(node, JSON.parse(source.textContent));
      node.setAttribute("data-drawn", "true");
    }
  }

  window.TokenomyChart = KINDS;
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
