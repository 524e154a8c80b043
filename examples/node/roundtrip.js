#!/usr/bin/env node
// A sancodec client in Node.js, written from the .proto files and docs alone: it reads a WFDB
// record as int16 ADC counts, encodes it with its ADC mapping, decodes the codes, and prints the
// rate and the fidelity against the record's physical signal.
//
//   npm ci --prefix examples/node
//   node examples/node/roundtrip.js --server 127.0.0.1:50051 [--record data/demo/mitdb100_excerpt.hea]
//                                   [--model ecg] [--chunk-frames 997]
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const REPO = path.resolve(__dirname, "..", "..");
const SERVICE = "sancodec.v1.CodecService";

function parseArgs(argv) {
  const args = {
    server: "127.0.0.1:50051",
    record: path.join(REPO, "data", "demo", "mitdb100_excerpt.hea"),
    model: "ecg",
    chunkFrames: 997,
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--server") args.server = value;
    else if (flag === "--record") args.record = value;
    else if (flag === "--model") args.model = value;
    else if (flag === "--chunk-frames") args.chunkFrames = Number.parseInt(value, 10);
    else throw new Error(`unknown flag ${flag}`);
  }
  if (!(args.chunkFrames > 0)) throw new Error("--chunk-frames must be a positive integer");
  return args;
}

// --- the record: a WFDB header and its format-16 signal file (little-endian int16 by frame) ---

function readHeader(heaPath) {
  const lines = fs
    .readFileSync(heaPath, "utf8")
    .split(/\r?\n/)
    .filter((line) => line.trim() && !line.startsWith("#"));
  const [name, signals, rate, frames] = lines[0].trim().split(/\s+/);
  const channels = lines.slice(1, 1 + Number(signals)).map((line) => {
    const [file, format, gainSpec, resolution, , initial, checksum, , ...label] = line.trim().split(/\s+/);
    // "200.0(1024)/mV": gain in counts per unit, baseline count, units
    const match = /^([\d.eE+-]+)(?:\(([-\d]+)\))?(?:\/(.+))?$/.exec(gainSpec);
    if (!match) throw new Error(`${heaPath}: cannot read the gain ${gainSpec}`);
    return {
      file, format, name: label.join(" "),
      adcGain: Number(match[1]), adcBaseline: Number(match[2] ?? 0), units: match[3] ?? "mV",
      resolution: Number(resolution), initial: Number(initial), checksum: Number(checksum),
    };
  });
  if (channels.some((c) => c.format !== "16" || c.file !== channels[0].file)) {
    throw new Error(`${heaPath}: this example reads one signal file in WFDB format 16 only`);
  }
  return { name, rate: Number(rate), frames: Number(frames), channels };
}

function readCounts(heaPath, header) {
  const bytes = fs.readFileSync(path.join(path.dirname(heaPath), header.channels[0].file));
  const count = header.channels.length;
  if (bytes.length !== header.frames * count * 2) {
    throw new Error(`${header.name}: expected ${header.frames * count * 2} bytes, found ${bytes.length}`);
  }
  const counts = new Int16Array(header.frames * count);
  for (let i = 0; i < counts.length; i++) counts[i] = bytes.readInt16LE(2 * i);
  header.channels.forEach((c, ch) => { // the header's checks: first value and 16-bit sum
    let sum = 0;
    for (let f = 0; f < header.frames; f++) sum = (sum + counts[f * count + ch]) & 0xffff;
    if (counts[ch] !== c.initial || (sum << 16) >> 16 !== c.checksum) {
      throw new Error(`${header.name}: channel ${c.name} fails the header's checksum`);
    }
  });
  return { bytes, counts };
}

// --- the service ---

function loadService(address) {
  const definition = protoLoader.loadSync(
    ["sancodec/v1/codec.proto", "grpc/health/v1/health.proto"],
    { includeDirs: [path.join(REPO, "proto")], keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true },
  );
  const proto = grpc.loadPackageDefinition(definition);
  const credentials = grpc.credentials.createInsecure();
  return {
    codec: new proto.sancodec.v1.CodecService(address, credentials),
    health: new proto.grpc.health.v1.Health(address, credentials),
  };
}

function unary(client, method, request) {
  const deadline = new Date(Date.now() + 30_000);
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (error, reply) => (error ? reject(error) : resolve(reply)));
  });
}

// A bidirectional stream: write every request (waiting whenever the transport asks us to),
// half-close, and collect every response; the first error rejects.
async function stream(client, method, requests) {
  const call = client[method]({ deadline: new Date(Date.now() + 120_000) });
  const responses = [];
  const done = new Promise((resolve, reject) => {
    call.on("data", (response) => responses.push(response));
    call.on("error", reject);
    call.on("end", () => resolve(responses));
  });
  for (const request of requests) {
    if (!call.write(request)) await Promise.race([new Promise((resolve) => call.once("drain", resolve)), done]);
  }
  call.end();
  return done;
}

async function encode(codec, args, header, data) {
  const frameBytes = header.channels.length * 2;
  const config = {
    model: args.model,
    sample_rate_hz: header.rate,
    channel_count: header.channels.length,
    dtype: "SAMPLE_DTYPE_INT16",
    // int16 needs each channel's ADC mapping: physical = (raw - adc_baseline) / adc_gain
    channels: header.channels.map((c) => ({
      name: c.name, units: c.units, adc_gain: c.adcGain, adc_baseline: c.adcBaseline,
      adc_resolution_bits: c.resolution,
    })),
  };
  const requests = [{ config }];
  for (let lo = 0; lo < data.bytes.length; lo += args.chunkFrames * frameBytes) {
    requests.push({ chunk: { samples: data.bytes.subarray(lo, lo + args.chunkFrames * frameBytes) } });
  }
  const responses = await stream(codec, "Encode", requests);
  const problems = responses.filter((r) => r.payload === "status");
  if (problems.length) throw new Error(`the server refused chunks: ${JSON.stringify(problems)}`);
  return {
    started: responses[0].started,
    blocks: responses.filter((r) => r.payload === "block").map((r) => r.block),
    summary: responses[responses.length - 1].summary,
  };
}

async function decode(codec, coded, count) {
  // EncodeStarted.channels map the model's values to physical units; the codebook needs no model.
  const config = { codebook: coded.started.codebook, channel_count: count, channels: coded.started.channels };
  const responses = await stream(codec, "Decode", [{ config }, ...coded.blocks.map((block) => ({ block }))]);
  const frames = responses.reduce((n, r) => n + r.chunk.sample_count, 0);
  const samples = new Float32Array(frames * count); // interleaved by frame, as sent
  let at = 0;
  for (const { chunk } of responses) {
    if (chunk.start_sample !== at / count) throw new Error(`a gap before frame ${chunk.start_sample}`);
    for (let i = 0; i < chunk.samples.length / 4; i++) samples[at + i] = chunk.samples.readFloatLE(4 * i);
    at += chunk.sample_count * count;
  }
  return samples;
}

// PRDN as sancodec defines it: 100 ||x - x_hat|| / ||x - mean(x)||, each channel's mean removed,
// pooled over channels.
function prdnPercent(header, counts, decoded) {
  const count = header.channels.length;
  let error = 0;
  let energy = 0;
  header.channels.forEach((c, ch) => {
    const physical = (f) => (counts[f * count + ch] - c.adcBaseline) / c.adcGain;
    let mean = 0;
    for (let f = 0; f < header.frames; f++) mean += physical(f) / header.frames;
    for (let f = 0; f < header.frames; f++) {
      error += (physical(f) - decoded[f * count + ch]) ** 2;
      energy += (physical(f) - mean) ** 2;
    }
  });
  return (100 * Math.sqrt(error)) / Math.sqrt(energy);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const header = readHeader(args.record);
  const data = readCounts(args.record, header);
  const { codec, health } = loadService(args.server);

  const status = (await unary(health, "Check", { service: SERVICE })).status;
  if (status !== "SERVING") throw new Error(`${SERVICE} at ${args.server} is ${status}`);
  const model = (await unary(codec, "GetModel", { name: args.model })).model;
  console.log(`model ${model.ref.name}/${model.ref.version}: ${model.sample_rate_hz} Hz, in ${model.units}`);
  const c0 = header.channels[0];
  console.log(`record ${header.name}: ${header.channels.length} channels x ${header.frames} frames, `
    + `int16 at ${c0.adcGain} counts/${c0.units}, baseline ${c0.adcBaseline}`);

  const coded = await encode(codec, args, header, data);
  const samples = header.frames * header.channels.length; // bits/sample counts every channel
  if (coded.summary.sample_count !== header.frames) throw new Error("the summary lost frames");
  const decoded = await decode(codec, coded, header.channels.length);
  if (decoded.length !== samples) throw new Error(`decoded ${decoded.length} of ${samples} samples`);

  console.log(`blocks: ${coded.summary.block_count}, code bytes: ${coded.summary.code_bytes}`);
  console.log(`decoded units: ${coded.started.channels.map((c) => c.units).join(", ")}`);
  console.log(`bits/sample: ${((8 * coded.summary.code_bytes) / samples).toFixed(4)}`);
  console.log(`PRDN: ${prdnPercent(header, data.counts, decoded).toFixed(3)} %`);
  codec.close();
  health.close();
}

main().catch((error) => {
  console.error(`roundtrip: ${error.details ?? error.message}`);
  process.exit(1);
});
