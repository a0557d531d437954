// The attention page: queries on the left, keys on the right, one line per (query, key) pair whose attention
// weight is above the threshold, one colour per head. Plain ES2017, no libraries.
//
// The data is JSON: {threshold, views: [{name, queryTokens, keyTokens, layerKeyTokens, layerNames, weights}]},
// where weights[layer][head][query][key] is how much that query attends to that key. A layer named in
// layerKeyTokens has its own keys (a memory-compressed layer's slots, "tokens 0–2: the cat sat"); every other
// layer's keys are keyTokens. layerNames label the layer selector ("1 (compressed)").
"use strict";

const DATA = JSON.parse(document.getElementById("attention-data").textContent);
const SVG_NS = "http://www.w3.org/2000/svg";
const ROW_HEIGHT = 24; // pixels; matches .token's height in the stylesheet, so lines meet the tokens' middles
const LINES_WIDTH = 320;
const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
];

// Everything the drawing depends on. Controls change it, then call draw().
const state = {
  view: 0,
  layer: 0,
  heads: new Set(),
  threshold: DATA.threshold,
  focus: null, // {side: "query" | "key", index} while the mouse is over a token
};

const elements = {
  viewSelect: document.getElementById("view-select"),
  layerSelect: document.getElementById("layer-select"),
  threshold: document.getElementById("threshold"),
  lineCount: document.getElementById("line-count"),
  lineInfo: document.getElementById("line-info"),
  headBoxes: document.getElementById("head-boxes"),
  queryColumn: document.getElementById("query-column"),
  keyColumn: document.getElementById("key-column"),
  svg: document.getElementById("lines"),
};

function headColour(head) {
  if (head < PALETTE.length) return PALETTE[head];
  return `hsl(${(head * 137.5) % 360}, 65%, 45%)`; // golden-angle steps keep extra heads apart
}

function currentView() {
  return DATA.views[state.view];
}

// The keys of the selected layer: its own labels when it has them, else the view's key tokens.
function currentKeys() {
  const view = currentView();
  const own = view.layerKeyTokens && view.layerKeyTokens[String(state.layer)];
  return own || view.keyTokens;
}

function fillSelect(select, labels, selected) {
  select.replaceChildren();
  labels.forEach((label, index) => {
    const option = document.createElement("option");
    option.value = String(index);
    option.textContent = label;
    select.appendChild(option);
  });
  select.value = String(selected);
}

// Token text is data: textContent never parses it as HTML.
function tokenElement(text, side, index) {
  const element = document.createElement("div");
  element.className = "token";
  element.textContent = text;
  element.title = text;
  element.dataset.side = side;
  element.dataset.index = String(index);
  element.addEventListener("mouseenter", () => {
    state.focus = { side, index };
    element.classList.add("focused");
    draw();
  });
  element.addEventListener("mouseleave", () => {
    state.focus = null;
    element.classList.remove("focused");
    draw();
  });
  return element;
}

function headBox(head) {
  const label = document.createElement("label");
  label.className = "head";
  label.style.background = headColour(head);
  label.title = "click to toggle, double-click to show this head alone";
  const box = document.createElement("input");
  box.type = "checkbox";
  box.dataset.head = String(head);
  box.checked = state.heads.has(head);
  box.addEventListener("change", () => {
    if (box.checked) state.heads.add(head);
    else state.heads.delete(head);
    draw();
  });
  label.addEventListener("dblclick", () => setHeads([head]));
  label.append(box, `head ${head}`);
  return label;
}

function setHeads(heads) {
  state.heads = new Set(heads);
  for (const box of elements.headBoxes.querySelectorAll("input")) {
    box.checked = state.heads.has(Number(box.dataset.head));
  }
  draw();
}

function range(n) {
  return Array.from({ length: n }, (_, i) => i);
}

// Rebuild the controls and token columns for the chosen view; views may differ in layers, heads and tokens.
function showView(index) {
  state.view = index;
  const view = currentView();
  const layers = view.weights.length;
  const heads = view.weights[0].length;
  state.layer = Math.min(state.layer, layers - 1);
  state.heads = new Set(range(heads));
  state.focus = null;
  fillSelect(elements.layerSelect, view.layerNames || range(layers).map(String), state.layer);
  elements.headBoxes.replaceChildren(...range(heads).map(headBox));
  elements.queryColumn.replaceChildren(...view.queryTokens.map((t, i) => tokenElement(t, "query", i)));
  showLayer(state.layer);
}

// Select a layer: its key column (a compressed layer's keys differ from the others') and its lines.
function showLayer(layer) {
  state.layer = layer;
  if (state.focus !== null && state.focus.side === "key") state.focus = null;
  elements.keyColumn.replaceChildren(...currentKeys().map((t, i) => tokenElement(t, "key", i)));
  draw();
}

function isFocused(query, key) {
  if (state.focus === null) return true;
  return state.focus.side === "query" ? state.focus.index === query : state.focus.index === key;
}

function lineElement(head, query, key, weight) {
  const line = document.createElementNS(SVG_NS, "line");
  line.setAttribute("x1", "0");
  line.setAttribute("y1", String((query + 0.5) * ROW_HEIGHT));
  line.setAttribute("x2", String(LINES_WIDTH));
  line.setAttribute("y2", String((key + 0.5) * ROW_HEIGHT));
  line.setAttribute("stroke", headColour(head));
  line.setAttribute("stroke-opacity", String(Math.min(1, weight)));
  line.setAttribute("stroke-width", String(1 + 3 * weight));
  line.dataset.head = String(head);
  line.dataset.query = String(query);
  line.dataset.key = String(key);
  return line;
}

// One shared readout rather than a <title> per line: thousands of <title> children make layout take seconds.
function describeLine(event) {
  const line = event.target;
  if (!(line instanceof SVGLineElement)) return;
  const view = currentView();
  const [head, query, key] = [line.dataset.head, line.dataset.query, line.dataset.key].map(Number);
  const weight = view.weights[state.layer][head][query][key];
  elements.lineInfo.textContent = `head ${head}: ${view.queryTokens[query]} \u2192 ${currentKeys()[key]} = ${weight}`;
}

// One line per (head, query, key) with weight above the threshold, for the selected layer and heads.
function draw() {
  const view = currentView();
  const rows = Math.max(view.queryTokens.length, currentKeys().length);
  elements.svg.setAttribute("width", String(LINES_WIDTH));
  elements.svg.setAttribute("height", String(rows * ROW_HEIGHT));
  const lines = document.createDocumentFragment(); // not an array: spreading 100k lines overflows the stack
  const heads = Array.from(state.heads).sort((a, b) => a - b);
  for (const head of heads) {
    const weights = view.weights[state.layer][head];
    weights.forEach((row, query) => {
      row.forEach((weight, key) => {
        if (weight > state.threshold && isFocused(query, key)) {
          lines.appendChild(lineElement(head, query, key, weight));
        }
      });
    });
  }
  const count = lines.childNodes.length;
  elements.svg.replaceChildren(lines);
  elements.lineCount.textContent = `${count} line${count === 1 ? "" : "s"}`;
}

function setUp() {
  fillSelect(elements.viewSelect, DATA.views.map((view) => view.name), 0);
  elements.viewSelect.addEventListener("change", () => showView(Number(elements.viewSelect.value)));
  elements.layerSelect.addEventListener("change", () => showLayer(Number(elements.layerSelect.value)));
  elements.svg.addEventListener("mouseover", describeLine);
  elements.threshold.value = String(state.threshold);
  elements.threshold.addEventListener("input", () => {
    const value = Number.parseFloat(elements.threshold.value);
    if (Number.isFinite(value)) {
      state.threshold = value;
      draw();
    }
  });
  const allHeads = () => setHeads(range(currentView().weights[0].length));
  document.getElementById("all-heads").addEventListener("click", allHeads);
  document.getElementById("no-heads").addEventListener("click", () => setHeads([]));
  showView(0);
}

setUp();
