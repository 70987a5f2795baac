// vscbench report: the item browser. All item data is untrusted model output: it is read from a JSON
// block and put into the page with textContent only (never innerHTML); image sources must be data:image URLs.
"use strict";
(function () {
  var node = document.getElementById("vsc-data");
  if (!node) { return; }
  var data = JSON.parse(node.textContent);
  var PAGE = 100;
  var shown = PAGE;
  var VERDICTS = { right: 1, wrong: 1, excluded: 1 };

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function fill(sel, pairs) {
    pairs.forEach(function (p) { var o = el("option", null, p[1]); o.value = p[0]; sel.appendChild(o); });
  }
  function uniq(key) {
    var seen = {}; var out = [];
    data.items.forEach(function (it) { var v = it[key]; if (v && !seen[v]) { seen[v] = 1; out.push(v); } });
    return out.sort();
  }

  var fRun = $("f-run"), fVerdict = $("f-verdict"), fDis = $("f-dis"), fGroup = $("f-group"),
      fSetting = $("f-setting"), fLabel = $("f-label"), fText = $("f-text");
  fill(fRun, [["", "all runs"]].concat(data.runs.map(function (r, i) { return [String(i), r.id]; })));
  fill(fGroup, [["", "all"]].concat(uniq("grp").map(function (g) { return [g, g]; })));
  fill(fSetting, [["", "all"]].concat(uniq("setting").map(function (s) { return [s, s]; })));

  function matches(it) {
    if (fRun.value !== "" && String(it.r) !== fRun.value) { return false; }
    if (fVerdict.value !== "" && it.v !== fVerdict.value) { return false; }
    if (fDis.checked && !it.dis) { return false; }
    if (fGroup.value !== "" && it.grp !== fGroup.value) { return false; }
    if (fSetting.value !== "" && it.setting !== fSetting.value) { return false; }
    if (fLabel.value !== "" && it.label !== fLabel.value) { return false; }
    var t = fText.value.trim().toLowerCase();
    if (t && (it.id + "\n" + it.q + "\n" + it.resp).toLowerCase().indexOf(t) < 0) { return false; }
    return true;
  }

  function row(it) {
    var tr = el("tr", "item");
    if (VERDICTS[it.v]) { tr.classList.add(it.v); }
    var td = el("td", "thumb");
    var src = it.img ? data.images[it.img] : null;
    if (typeof src === "string" && src.indexOf("data:image/") === 0) {
      var im = el("img"); im.alt = "item image"; im.src = src; td.appendChild(im);
    }
    tr.appendChild(td);

    td = el("td");
    td.appendChild(el("div", "meta", it.id));
    td.appendChild(el("span", "tag " + (it.label === "unsafe" ? "unsafe" : "safe"), it.label));
    td.appendChild(el("span", "tag", it.setting));
    if (it.grp) { td.appendChild(el("span", "tag", it.grp)); }
    if (data.runs.length > 1) { td.appendChild(el("div", "meta", "run: " + data.runs[it.r].id)); }
    tr.appendChild(td);

    td = el("td");
    td.appendChild(el("div", "query", it.q));
    var resp = el("div", "resp", it.resp);
    td.appendChild(resp);
    if (it.st !== "ok") {
      td.appendChild(el("div", "meta", "status: " + it.st + (it.err ? " (" + it.err + ")" : "")));
    }
    tr.appendChild(td);

    td = el("td");
    var v = el("div", "v-" + (VERDICTS[it.v] ? it.v : "excluded"), it.v + (it.why ? " (" + it.why + ")" : ""));
    td.appendChild(v);
    Object.keys(it.lab).sort().forEach(function (j) {
      var line = el("div", "meta");
      line.textContent = j + (j === data.runs[it.r].judge ? " (scored)" : "") + ": " + it.lab[j];
      td.appendChild(line);
    });
    tr.appendChild(td);
    return tr;
  }

  function render() {
    var body = $("items-body");
    while (body.firstChild) { body.removeChild(body.firstChild); }
    var total = 0, put = 0;
    var frag = document.createDocumentFragment();
    data.items.forEach(function (it) {
      if (!matches(it)) { return; }
      total += 1;
      if (put < shown) { frag.appendChild(row(it)); put += 1; }
    });
    body.appendChild(frag);
    $("f-count").textContent = total + " of " + data.items.length + " items" +
      (total > put ? " (showing " + put + ")" : "");
    $("more").hidden = total <= put;
  }

  function reset() { shown = PAGE; render(); }
  [fRun, fVerdict, fGroup, fSetting, fLabel].forEach(function (s) { s.addEventListener("change", reset); });
  fDis.addEventListener("change", reset);
  fText.addEventListener("input", reset);
  $("more").addEventListener("click", function () { shown += PAGE; render(); });
  render();
}());
