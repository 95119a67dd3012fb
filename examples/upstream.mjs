// A tiny example upstream for the local demo: answers every request with a page that shows what
// reached it (method, path, and the headers Portcullis added, identity headers included).
import http from 'node:http';

const port = Number(process.env.PORT || process.argv[2] || 8001);
const name = process.env.UPSTREAM_NAME || 'example upstream';

http
  .createServer((req, res) => {
    const rows = Object.entries(req.headers)
      .map(([k, v]) => `<tr><td><code>${esc(k)}</code></td><td><code>${esc(String(v))}</code></td></tr>`)
      .join('');
    const wantsJson = (req.headers.accept || '').includes('application/json');
    if (wantsJson) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ upstream: name, method: req.method, url: req.url, headers: req.headers }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>${esc(name)}</title><h1>Hello from the ${esc(name)}</h1>
<p>${esc(req.method)} <code>${esc(req.url)}</code></p><table>${rows}</table>`);
  })
  .listen(port, '127.0.0.1', () => console.error(`example upstream on http://127.0.0.1:${port}`));

function esc(s) {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}
