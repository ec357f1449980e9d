// Checks an RFC 6962 inclusion proof in the browser with WebCrypto (RFC 9162 2.1.3.2).
// Nothing is sent anywhere; the page's data attributes carry everything needed.
(function () {
  function bytes(b64) { return Uint8Array.from(atob(b64), function (c) { return c.charCodeAt(0); }); }
  function concat(a, b, c) {
    var out = new Uint8Array(a.length + b.length + (c ? c.length : 0));
    out.set(a, 0); out.set(b, a.length); if (c) { out.set(c, a.length + b.length); }
    return out;
  }
  async function sha256(data) { return new Uint8Array(await crypto.subtle.digest("SHA-256", data)); }
  function equal(a, b) { return a.length === b.length && a.every(function (v, i) { return v === b[i]; }); }
  async function verify(el) {
    var index = Number(el.dataset.index), size = Number(el.dataset.size);
    var proof = el.dataset.proof ? el.dataset.proof.split(",").map(bytes) : [];
    var hash = await sha256(concat(new Uint8Array([0]), bytes(el.dataset.leaf)));
    var fn = index, sn = size - 1;
    for (var i = 0; i < proof.length; i++) {
      if (sn === 0) { return false; }
      if (fn % 2 === 1 || fn === sn) {
        hash = await sha256(concat(new Uint8Array([1]), proof[i], hash));
        if (fn % 2 === 0) { while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); } }
      } else {
        hash = await sha256(concat(new Uint8Array([1]), hash, proof[i]));
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return sn === 0 && equal(hash, bytes(el.dataset.root));
  }
  document.addEventListener("DOMContentLoaded", async function () {
    var el = document.getElementById("proof");
    var out = document.getElementById("proof-result");
    if (!el || !window.crypto || !crypto.subtle) { return; }
    var ok = await verify(el);
    // The page carries both messages in the visitor's language.
    out.textContent = ok ? el.dataset.verified : el.dataset.failed;
    out.className = ok ? "verified" : "error";
  });
})();
