#!/usr/bin/env node
// Sends log records to an OTLP/HTTP endpoint through the real OpenTelemetry JS
// logs SDK and its OTLP/HTTP JSON exporter (tests/otlp/package.json, installed
// by scripts/test.sh with `npm ci --prefix tests/otlp`).
//
//   node tests/otlp/send_logs.mjs --endpoint http://127.0.0.1:PORT --run RUNID \
//        --key KEY [--header bearer|x-api-key|pair] [--key-id ID] [--count N] \
//        [--compression none|gzip] [--timeout-ms MS]
//
// The records (N, default 5) go out as one application/json POST to
// ENDPOINT/v1/logs, uncompressed unless --compression gzip. The streaming key
// travels as `Authorization: Bearer KEY` (bearer, the default), `X-API-Key:
// KEY` (x-api-key) or `X-API-Key-ID: ID` plus `X-API-Key-Secret: KEY` (pair).
// The resource carries service.name=otlp-test-js and run.id=RUNID. Odd-numbered
// records carry a trace_id/span_id (a span context set on the record's context).
//
// Prints one JSON line to stdout describing what was sent, and exits 1 if the
// export failed (the exporter's result callback said FAILED), 2 on bad
// arguments.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ROOT_CONTEXT, TraceFlags, trace } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';

const SERVICE = 'otlp-test-js';
const SCOPE = 'sluice.otlp-test';
const SCOPE_VERSION = '1.0.0';
// Long enough that the batch processor never exports on its own timer: the one
// export is the forceFlush below, so every record lands in one request.
const NEVER_MS = 600_000;

function usage(msg) {
  process.stderr.write(
    `send_logs.mjs: ${msg}\nusage: send_logs.mjs --endpoint URL --run RUNID --key KEY ` +
      '[--header bearer|x-api-key|pair] [--key-id ID] [--count N] [--compression none|gzip] [--timeout-ms MS]\n',
  );
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      endpoint: { type: 'string' },
      run: { type: 'string' },
      key: { type: 'string' },
      header: { type: 'string', default: 'bearer' },
      'key-id': { type: 'string' },
      count: { type: 'string', default: '5' },
      compression: { type: 'string', default: 'none' },
      'timeout-ms': { type: 'string', default: '10000' },
    },
    strict: true,
  }));
} catch (e) {
  usage(e.message);
}
for (const required of ['endpoint', 'run', 'key']) {
  if (!values[required]) usage(`--${required} is required`);
}
if (!['bearer', 'x-api-key', 'pair'].includes(values.header)) usage(`bad --header ${values.header}`);
if (values.header === 'pair' && !values['key-id']) usage('--header pair needs --key-id');
if (!['none', 'gzip'].includes(values.compression)) usage(`bad --compression ${values.compression}`);
const count = Number(values.count);
if (!Number.isInteger(count) || count < 1) usage(`bad --count ${values.count}`);
const timeoutMillis = Number(values['timeout-ms']);
if (!(timeoutMillis > 0)) usage(`bad --timeout-ms ${values['timeout-ms']}`);

const run = values.run;
const headers =
  values.header === 'bearer'
    ? { Authorization: `Bearer ${values.key}` }
    : values.header === 'x-api-key'
      ? { 'X-API-Key': values.key }
      : { 'X-API-Key-ID': values['key-id'], 'X-API-Key-Secret': values.key };

const exporterVersion = JSON.parse(
  readFileSync(new URL('./node_modules/@opentelemetry/exporter-logs-otlp-http/package.json', import.meta.url)),
).version;

const inner = new OTLPLogExporter({
  url: `${values.endpoint.replace(/\/+$/, '')}/v1/logs`,
  headers,
  compression: values.compression,
  timeoutMillis,
});

// Records each export's result: the SDK only logs (through diag, silent by
// default) an export that failed.
const results = [];
const exporter = {
  export(logs, resultCallback) {
    inner.export(logs, (result) => {
      results.push(result);
      resultCallback(result);
    });
  },
  shutdown: () => inner.shutdown(),
  forceFlush: () => inner.forceFlush(),
};

const provider = new LoggerProvider({
  resource: defaultResource().merge(resourceFromAttributes({ 'service.name': SERVICE, 'run.id': run })),
  processors: [
    new BatchLogRecordProcessor({
      exporter,
      scheduledDelayMillis: NEVER_MS,
      maxExportBatchSize: count,
      maxQueueSize: Math.max(count, 2048),
      exportTimeoutMillis: timeoutMillis + 5_000,
    }),
  ],
});
const logger = provider.getLogger(SCOPE, SCOPE_VERSION);

const SEVERITIES = [
  [SeverityNumber.INFO, 'INFO'],
  [SeverityNumber.WARN, 'WARN'],
  [SeverityNumber.ERROR, 'ERROR'],
];
const bodies = [];
const severities = [];
const traceIds = [];
const spanIds = [];
for (let i = 0; i < count; i++) {
  const [severityNumber, severityText] = SEVERITIES[i % SEVERITIES.length];
  const body = `otlp-test-js run ${run} log ${i}`;
  const record = {
    timestamp: new Date(),
    severityNumber,
    severityText,
    body,
    attributes: {
      'run.id': run,
      index: i,
      ratio: i + 0.5,
      even: i % 2 === 0,
      tags: ['otlp', 'js', `n${i}`],
      http: { method: 'POST', status: 200 + i, route: { path: '/v1/logs', versioned: true } },
    },
  };
  if (i % 2 === 1) {
    const traceId = randomBytes(16).toString('hex');
    const spanId = randomBytes(8).toString('hex');
    record.context = trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId, traceFlags: TraceFlags.SAMPLED });
    traceIds.push(traceId);
    spanIds.push(spanId);
  } else {
    traceIds.push('');
    spanIds.push('');
  }
  logger.emit(record);
  bodies.push(body);
  severities.push(severityText);
}

let flushError = null;
try {
  await provider.forceFlush();
  await provider.shutdown();
} catch (e) {
  flushError = e;
}

const failed = results.filter((r) => r.code !== 0);
const ok = flushError === null && results.length > 0 && failed.length === 0;
if (!ok) {
  const why = flushError ?? failed[0]?.error ?? 'no export happened';
  process.stderr.write(`send_logs.mjs: export failed: ${why?.message ?? why}\n`);
}
process.stdout.write(
  JSON.stringify({
    signal: 'logs',
    ok,
    client: 'opentelemetry-js',
    exporter_version: exporterVersion,
    run,
    service: SERVICE,
    header: values.header,
    compression: values.compression,
    records: count,
    bodies,
    severities,
    trace_ids: traceIds,
    span_ids: spanIds,
  }) + '\n',
);
process.exitCode = ok ? 0 : 1;
