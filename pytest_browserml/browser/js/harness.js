// The browser side of pytest-browserml: loads onnxruntime-web, caches sessions,
// runs them with in-page timing, and moves tensors as raw bytes over the
// plugin's local HTTP server (never as JSON number lists).
//
// Python calls `load` and `connect` through Playwright, then everything else over a
// WebSocket to its server (a remote page: through Playwright too): one plain object
// per call and one back, as JSON text; `ready` comes before a new page's first run.
// Errors come back as {ok: false, error} so that the test, not the
// page, decides what failed.

let ort = null;
const sessions = new Map(); // sessionKey -> {session, createMs, firstRunMs, log}

// --- capturing ORT's log ---------------------------------------------------
// ORT writes its log through console.*; while `capture` is set those lines are
// kept here instead of being forwarded, so session creation at log level 0
// costs no DevTools traffic. Installed before ORT loads, so ORT binds to it.
let capture = null;
for (const level of ["log", "info", "warn", "error", "debug"]) {
  const original = console[level].bind(console);
  console[level] = (...args) => (capture ? capture.push(args.join(" ")) : original(...args));
}

// --- memory instrumentation -------------------------------------------------
// ORT's wasm heap is a WebAssembly.Memory that only grows: its byteLength is its peak.
const wasmMemories = [];
const NativeMemory = WebAssembly.Memory;
WebAssembly.Memory = function (...args) {
  const memory = new NativeMemory(...args);
  wasmMemories.push(memory);
  return memory;
};
WebAssembly.Memory.prototype = NativeMemory.prototype;

// No web API reports GPU memory: count the bytes of live buffers ourselves.
// WebGPU errors nobody caught (validation, out of memory) are kept for the run's answer.
const gpu = { live: 0, peak: 0, sizes: new WeakMap(), errors: [] };
if (globalThis.GPUDevice) {
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await requestDevice.apply(this, args);
    device.addEventListener("uncapturederror", (event) => gpu.errors.push(`${event.error.constructor.name}: ${event.error.message}`));
    return device;
  };
  const createBuffer = GPUDevice.prototype.createBuffer;
  GPUDevice.prototype.createBuffer = function (descriptor) {
    const buffer = createBuffer.call(this, descriptor);
    gpu.sizes.set(buffer, descriptor.size);
    gpu.live += descriptor.size;
    gpu.peak = Math.max(gpu.peak, gpu.live);
    return buffer;
  };
  const destroy = GPUBuffer.prototype.destroy;
  GPUBuffer.prototype.destroy = function () {
    gpu.live -= gpu.sizes.get(this) ?? 0;
    gpu.sizes.delete(this);
    return destroy.call(this);
  };
}

// --- loading and probing -----------------------------------------------------
// numThreads: ORT's threads per session (null keeps ORT's default, min(4, ceil(cores / 2))).
// warmupModelBase64: a one-node model; its session (on wasm, released at once) makes ORT fetch and
// compile its wasm module now, in the background, while Python goes on; `ready` waits for it (Python calls
// it before a new page's first run, under the page opening's deadline, so a run's deadline is the run's own).
let warming = null;

export async function load({ ortUrl, wasmPaths, numThreads, warmupModelBase64 }) {
  ort = await import(ortUrl);
  ort.env.wasm.wasmPaths = wasmPaths;
  if (numThreads) ort.env.wasm.numThreads = numThreads;
  if (warmupModelBase64) {
    warming = ort.InferenceSession.create(fromBase64(warmupModelBase64), { executionProviders: ["wasm"], logSeverityLevel: 3 })
      .then((session) => session.release(), () => null); // a failure here shows again in the first real session
  }
  return {
    ortVersion: ort.env.versions?.web ?? null, crossOriginIsolated, wasmThreads: crossOriginIsolated ? ort.env.wasm.numThreads ?? null : 1, // ORT runs one without isolation
   
    platform: navigator.userAgentData?.platform || navigator.platform, userAgent: navigator.userAgent,
  };
}

// The channel Python makes its calls through after `load`: a WebSocket to its
// server is one process hop shorter each way than page.evaluate.
const CALLS = { ready, probe, run };

export async function ready() {
  await warming;
  return {};
}

export function connect(url) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.onopen = () => resolve(true);
    socket.onerror = () => reject(new Error(`the call channel ${url} did not open`));
    socket.onmessage = async (event) => {
      const { name, arg } = JSON.parse(event.data);
      let answer;
      try {
        answer = await CALLS[name](arg);
      } catch (error) {
        answer = { browsermlError: String(error?.message ?? error) };
      }
      socket.send(JSON.stringify(answer));
    };
  });
}

// Full Chrome's first requestAdapter() of a page returned null on a real GPU (6 of 6 launches) and its
// second the GPU: ask again. ORT is handed the adapter found, so it does not ask (and get null) itself.
const ADAPTER_TRIES = 3;
let adapterFound = null;

async function webgpuAdapter() {
  for (let attempt = 0; !adapterFound && attempt < ADAPTER_TRIES; attempt++) {
    adapterFound = await navigator.gpu.requestAdapter();
    if (!adapterFound && attempt + 1 < ADAPTER_TRIES) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (adapterFound && ort?.env?.webgpu && !ort.env.webgpu.adapter) ort.env.webgpu.adapter = adapterFound;
  return adapterFound;
}

// What the adapter says of itself; architecture and description need --enable-webgpu-developer-features.
// The limits are those that bound how large a model's tensors may be on it.
function describeAdapter(adapter) {
  const info = adapter.info ?? {};
  return {
    vendor: info.vendor ?? "", architecture: info.architecture ?? "", device: info.device ?? "",
    description: info.description ?? "", driver: info.driver ?? "", backend: info.backend ?? "",
    isFallbackAdapter: Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter),
    shaderF16: adapter.features.has("shader-f16"),
    subgroups: adapter.features.has("subgroups"),
    limits: {
      maxBufferSize: adapter.limits.maxBufferSize,
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup,
    },
  };
}

// Whether the browser exposes what an EP needs, with the browser's own error text.
export async function probe(ep) {
  const report = { ep: ep.name, ok: true, reason: null, adapter: null, webnnDevices: null };
  if (ep.name === "webgpu") {
    if (!navigator.gpu) return { ...report, ok: false, reason: "navigator.gpu is undefined: WebGPU is not enabled in this browser" };
    const adapter = await webgpuAdapter();
    if (!adapter) return { ...report, ok: false, reason: `navigator.gpu.requestAdapter() returned null ${ADAPTER_TRIES} times: no WebGPU adapter` };
    report.adapter = describeAdapter(adapter);
  } else if (ep.name === "webnn") {
    if (!navigator.ml) return { ...report, ok: false, reason: "navigator.ml is undefined: WebNN is not enabled in this browser" };
    report.webnnDevices = {};
    for (const deviceType of ["cpu", "gpu", "npu"]) {
      try {
        await navigator.ml.createContext({ deviceType });
        report.webnnDevices[deviceType] = "ok";
      } catch (error) {
        report.webnnDevices[deviceType] = `${error.name}: ${error.message}`;
      }
    }
    const wanted = ep.deviceType ?? "cpu";
    if (report.webnnDevices[wanted] !== "ok") {
      return { ...report, ok: false, reason: `navigator.ml.createContext({deviceType: '${wanted}'}) threw ${report.webnnDevices[wanted]}` };
    }
  }
  return report;
}

// --- tensors as bytes ---------------------------------------------------------
const ARRAY_TYPES = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array,
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array,
  int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array,
  bool: Uint8Array,
};

// Small payloads ride inside the call as base64, which saves two HTTP round
// trips; large ones go over HTTP.
async function receiveFeeds(request) {
  const buffer = request.inputBase64 !== undefined
    ? fromBase64(request.inputBase64).buffer
    : await (await fetch(request.inputUrl)).arrayBuffer();
  const feeds = {};
  for (const spec of request.inputs) {
    if (spec.dtype === "string") {
      feeds[spec.name] = new ort.Tensor("string", spec.values, spec.shape);
      continue;
    }
    const ArrayType = ARRAY_TYPES[spec.dtype];
    const data = new ArrayType(buffer, spec.offset, spec.nbytes / ArrayType.BYTES_PER_ELEMENT);
    feeds[spec.name] = new ort.Tensor(spec.dtype, data, spec.shape);
  }
  return feeds;
}

// Outputs go back as one payload; offsets are 8-byte aligned so Python can view them in place.
async function sendOutputs(request, outputs) {
  const specs = [];
  const parts = [];
  let offset = 0;
  for (const [name, tensor] of Object.entries(outputs)) {
    if (tensor.type === "string") {
      specs.push({ name, dtype: "string", shape: tensor.dims, values: Array.from(tensor.data) });
      continue;
    }
    const data = tensor.data;
    const padding = (8 - (offset % 8)) % 8;
    if (padding) parts.push(new Uint8Array(padding));
    offset += padding;
    specs.push({ name, dtype: tensor.type, shape: tensor.dims, offset, nbytes: data.byteLength });
    parts.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    offset += data.byteLength;
  }
  if (offset <= request.inlineLimit) {
    const payload = new Uint8Array(offset);
    let at = 0;
    for (const part of parts) {
      payload.set(part, at);
      at += part.byteLength;
    }
    return { specs, base64: toBase64(payload) };
  }
  const response = await fetch(request.outputUrl, { method: "PUT", body: new Blob(parts) });
  if (!response.ok) throw new Error(`uploading outputs failed: HTTP ${response.status}`);
  return { specs };
}

function fromBase64(text) {
  return Uint8Array.fromBase64 ? Uint8Array.fromBase64(text) : Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function toBase64(bytes) {
  if (bytes.toBase64) return bytes.toBase64();
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

// --- sessions and runs --------------------------------------------------------
function sessionOptions(request) {
  const ep = request.ep.name === "webnn"
    ? { name: "webnn", deviceType: request.ep.deviceType ?? "cpu" }
    : request.ep.name;
  // The verbose log (placement) costs a third of a small session's creation: only when Python asks.
  const options = { executionProviders: [ep], logSeverityLevel: request.verboseLog ? 0 : 2, logVerbosityLevel: 0 };
  if (request.externalData.length) options.externalData = request.externalData;
  if (Object.keys(request.freeDimensions).length) options.freeDimensionOverrides = request.freeDimensions;
  if (request.profile) options.enableProfiling = true;
  return options;
}

async function createSession(request) {
  const log = [];
  capture = log;
  const started = performance.now();
  try {
    const model = request.modelBase64 !== undefined ? fromBase64(request.modelBase64) : request.modelUrl;
    const session = await ort.InferenceSession.create(model, sessionOptions(request));
    const createMs = performance.now() - started;
    // only what Python reads (placement, warnings, errors): the full log is ~150 lines a session
    return { session, createMs, log: log.filter((line) => KEPT_LOG.test(line)), firstRunMs: null };
  } catch (error) {
    throw Object.assign(error instanceof Error ? error : new Error(String(error)), { browsermlLog: log });
  } finally {
    capture = null;
  }
}

const RUN_OPTIONS = { logSeverityLevel: 2 };
const KEPT_LOG = /VerifyEachNodeIsAssignedToAnEp|\[W:|\[E:|removing requested execution provider/;

function memoryPeaks() {
  return {
    wasm: wasmMemories.length ? Math.max(...wasmMemories.map((m) => m.buffer.byteLength)) : null,
    gpuBuffers: globalThis.GPUDevice ? gpu.peak : null,
    jsHeap: performance.memory?.usedJSHeapSize ?? null,
  };
}

// Profiling: ORT's per-node events (printed as JSON when profiling ends) and,
// on JSEP WebGPU, per-kernel GPU times. A profiled session ends with its run.
const gpuKernels = [];

async function endProfiling(request, entry) {
  const lines = [];
  capture = lines;
  try {
    await entry.session.endProfiling();
  } finally {
    capture = null;
  }
  sessions.delete(request.sessionKey);
  await entry.session.release();
  return { events: lines, gpuKernels: gpuKernels.splice(0) };
}

export async function run(request) {
  let entry = sessions.get(request.sessionKey);
  const cached = Boolean(entry);
  try {
    if (request.profile && request.ep.name === "webgpu" && ort.env.webgpu) {
      ort.env.webgpu.profiling = { mode: "default", ondata: (kernel) => gpuKernels.push(kernel) };
    }
    let started = performance.now();
    const feeds = await receiveFeeds(request);
    const inputMs = performance.now() - started;
    gpu.peak = gpu.live;
    gpu.errors.length = 0;
    if (request.ep.name === "webgpu" && navigator.gpu) await webgpuAdapter();
    if (!entry) entry = await createSession(request);
    let outputs;
    if (entry.firstRunMs === null) {
      started = performance.now();
      outputs = await entry.session.run(feeds, RUN_OPTIONS);
      entry.firstRunMs = performance.now() - started;
      sessions.set(request.sessionKey, entry);
    }
    for (let i = 0; i < request.warmup; i++) outputs = await entry.session.run(feeds, RUN_OPTIONS);
    const timesMs = [];
    for (let i = 0; i < request.iterations; i++) {
      started = performance.now();
      outputs = await entry.session.run(feeds, RUN_OPTIONS);
      timesMs.push(performance.now() - started);
    }
    outputs ??= await entry.session.run(feeds, RUN_OPTIONS);
    started = performance.now();
    const sent = await sendOutputs(request, outputs);
    const outputMs = performance.now() - started;
    const profile = request.profile ? await endProfiling(request, entry) : null;
    if (request.releaseSession && sessions.delete(request.sessionKey)) await entry.session.release(); // a one-off copy
    return {
      ok: true, cached, outputs: sent.specs, outputBase64: sent.base64, timesMs,
      createMs: entry.createMs, firstRunMs: entry.firstRunMs,
      log: cached ? null : entry.log, // Python keeps it per session
      memory: memoryPeaks(), transfer: { inputMs, outputMs }, profile, gpuErrors: gpu.errors.splice(0),
    };
  } catch (error) {
    if (entry && !sessions.has(request.sessionKey)) entry.session.release(); // its first run failed: not kept
    return { ok: false, cached, error: String(error?.message ?? error), log: entry?.log ?? error?.browsermlLog ?? [] };
  }
}
