import http from 'node:http';

/**
 * Reads Prometheus exposition text into samples, for assertions. Handles what
 * prom-client writes: `# HELP`/`# TYPE` comments, `name{a="x",b="y"} value`,
 * escaped quotes in label values.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (const l of (m[2] ?? '').matchAll(labelRe))
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const raw = m[3]!;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    samples.push({ name: m[1]!, labels, value });
  }
  return samples;
}

/** The value of the one sample named `name` whose labels include `labels`; 0 when there is none. */
export function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const matches = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (matches.length > 1)
    throw new Error(`${matches.length} samples of ${name} match ${JSON.stringify(labels)}; be more specific`);
  return matches[0]?.value ?? 0;
}

export interface Scrape {
  status: number;
  contentType: string;
  body: string;
}

export function httpGet(url: string, method = 'GET'): Promise<Scrape> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** Scrapes `/metrics` at `endpoint`. */
export async function scrape(endpoint: string): Promise<Sample[]> {
  const r = await httpGet(`http://${endpoint}/metrics`);
  if (r.status !== 200) throw new Error(`GET /metrics answered ${r.status}: ${r.body}`);
  return parseExposition(r.body);
}

/**
 * Scrapes until `ready` holds. Call metrics are recorded when the proxy has
 * finished its side of a call, which may be just after the client saw the
 * answer; re-scraping on each turn of the event loop waits for exactly that.
 */
export async function scrapeUntil(
  endpoint: string,
  ready: (s: Sample[]) => boolean,
  timeoutMs = 5_000,
): Promise<Sample[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const samples = await scrape(endpoint);
    if (ready(samples) || Date.now() > until) return samples;
    await new Promise((r) => setImmediate(r));
  }
}
