// The dashboard page: signs in with the browser login cookie, opens the live feed, and shows
// one page per URL hash (#/vms, #/vm/NAME, #/images, #/operations).
import "@xterm/xterm/css/xterm.css";
import "./style.css";
import { connectLive, startLogin } from "./api.ts";
import { h, fill } from "./dom.ts";
import { imagesPage } from "./images.ts";
import { operationsPage, type Page } from "./pages.ts";
import { vmPage } from "./vm.ts";
import { vmsPage } from "./vms.ts";

const main = document.getElementById("main")!;
let current: Page | undefined;

function route(): Page {
  const hash = location.hash.replace(/^#/, "") || "/vms";
  const vm = /^\/vm\/([^/]+)$/.exec(hash);
  if (vm) return vmPage(decodeURIComponent(vm[1]!));
  if (hash === "/images") return imagesPage();
  if (hash === "/operations") return operationsPage();
  return vmsPage();
}

function render(): void {
  current?.dispose();
  current = route();
  fill(main, current.el);
  const section = (location.hash.match(/^#\/(\w+)/)?.[1] ?? "vms").replace(/^vm$/, "vms");
  for (const a of document.querySelectorAll<HTMLAnchorElement>("nav a")) a.classList.toggle("active", a.dataset.nav === section);
}

async function boot(): Promise<void> {
  if (!(await startLogin())) {
    fill(main, h("section", { class: "card" }, "Not signed in. Run ", h("code", {}, "banger web"), " and open the link it prints."));
    return;
  }
  connectLive(document.getElementById("live")!);
  window.addEventListener("hashchange", render);
  render();
}

void boot();
