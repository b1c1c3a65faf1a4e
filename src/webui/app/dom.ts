// DOM building and formatting helpers for the page (no framework: elements made directly).
// The page's one rule for text: names, catalog text, guest output and error messages are
// untrusted, so they go in only as text (text nodes, textContent, attribute values through
// setAttribute); nothing in the page uses innerHTML or builds markup from strings.
// Sizes and durations read as in the CLI: util/human.ts formats both.
import { humanBytes, humanDuration } from "../../util/human.ts";

export type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | ((ev: Event) => void) | undefined>;

/** h("button", { class: "primary", onclick: go }, "Start") */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

export function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "number" ? String(c) : c);
  }
}

/** Replaces an element's children. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

export function badge(state: string): HTMLElement {
  return h("span", { class: `badge ${state}`, "data-state": state }, state);
}

/**
 * A table with a header row; `rows` are cells. An empty list shows `empty` instead. Each cell
 * carries its column's name (data-label): on narrow screens the rows stack as cards with
 * the names beside the values (style.css), so nothing is squeezed or scrolls sideways.
 */
export function table(headers: string[], rows: Child[][], empty: string, rowAttrs?: (i: number) => Attrs): HTMLElement {
  if (rows.length === 0) return h("div", { class: "empty" }, empty);
  return h(
    "table",
    { class: "stack" },
    h("thead", {}, h("tr", {}, ...headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, ...rows.map((cells, i) => h("tr", rowAttrs?.(i) ?? {}, ...cells.map((c, col) => h("td", { "data-label": headers[col] || undefined }, c))))),
  );
}

/** An error as the daemon said it: its one line, and the hint (what to do next) under it. */
export function errorBox(message: string, hint?: string): HTMLElement {
  return h("div", { class: "error-box", role: "alert" }, h("div", { class: "error-text" }, message), hint ? h("div", { class: "hint" }, hint) : null);
}

export function bytes(n: number | null | undefined): string {
  return n === null || n === undefined ? "–" : humanBytes(n);
}

export function duration(seconds: number | null | undefined): string {
  return seconds === null || seconds === undefined || !Number.isFinite(seconds) ? "–" : humanDuration(seconds);
}

export function since(iso: string | null | undefined): string {
  return iso ? duration((Date.now() - Date.parse(iso)) / 1000) : "–";
}

export function when(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : "–";
}

/** A small bar and a label, for CPU and memory. */
export function meter(fraction: number | null, label: string): HTMLElement {
  const pct = fraction === null ? 0 : Math.max(0, Math.min(1, fraction)) * 100;
  return h("span", { class: "metered" }, h("span", { class: "meter" }, h("span", { style: `width:${pct.toFixed(0)}%` })), h("span", {}, label));
}

/** Shows an error (and its hint) for a few seconds in the corner. */
export function toast(message: string, hint?: string): void {
  const el = h("div", { class: "toast", role: "alert" }, message, hint ? h("div", { class: "hint" }, hint) : null);
  document.body.append(el);
  setTimeout(() => el.remove(), 6000);
}
