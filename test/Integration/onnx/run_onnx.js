// Runs ONNX models with onnxruntime-node on the CPU execution provider.
//
//   node run_onnx.js MANIFEST.json
//
// MANIFEST.json holds {"jobs": [JOB, ...]}; each JOB is
//   {"model": PATH, "threads": N, "repeat": R, "out_dir": DIR,
//    "inputs": [{"name": S, "dtype": ORT_TYPE, "shape": [...], "file": RAW_BYTES_PATH}],
//    "env": {...}}   (env is ignored here; the caller sets it for the process)
// For every job the runner writes each graph output as raw little-endian bytes
// to DIR/out<i>.bin and prints one JSON line per job on stdout:
//   {"ok": true, "outputs": [{"name", "dtype", "shape", "file"}], "median_ms": M}
//   {"ok": false, "stage": "create" | "run", "error": MESSAGE}
// Jobs are independent: one failing does not stop the others. The exit code is
// 0 unless the manifest itself cannot be processed.
const fs = require("fs");
const path = require("path");

function loadOrt() {
  const dir = process.env.MOE_MLIR_ORT_DIR;
  return require(dir ? path.resolve(dir) : "onnxruntime-node");
}

// ORT tensor type -> typed array constructor used to view the raw bytes.
const VIEW = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
  bool: Uint8Array,
};

function makeTensor(ort, spec) {
  const Ctor = VIEW[spec.dtype];
  if (!Ctor) throw new Error(`unsupported input dtype '${spec.dtype}' for '${spec.name}'`);
  const bytes = fs.readFileSync(spec.file);
  // Copy into a fresh, aligned ArrayBuffer (Buffer slices may be unaligned).
  const ab = new ArrayBuffer(bytes.length);
  new Uint8Array(ab).set(bytes);
  let data = new Ctor(ab);
  if (spec.dtype === "float16" && typeof globalThis.Float16Array !== "undefined") {
    data = new globalThis.Float16Array(ab);
  }
  return new ort.Tensor(spec.dtype, data, spec.shape);
}

function tensorBytes(t) {
  const d = t.data;
  if (Array.isArray(d)) throw new Error(`output of type ${t.type} is not a numeric tensor`);
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

async function runJob(ort, job) {
  let session;
  try {
    session = await ort.InferenceSession.create(job.model, {
      executionProviders: ["cpu"],
      intraOpNumThreads: job.threads || 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: job.optimization || "all",
    });
  } catch (e) {
    return { ok: false, stage: "create", error: String(e && e.message ? e.message : e) };
  }
  try {
    const feeds = {};
    for (const spec of job.inputs) feeds[spec.name] = makeTensor(ort, spec);
    let result = await session.run(feeds);
    const times = [];
    for (let i = 0; i < (job.repeat || 0); ++i) {
      const t0 = process.hrtime.bigint();
      result = await session.run(feeds);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    const median = times.length ? times[Math.floor(times.length / 2)] : null;
    const outputs = [];
    session.outputNames.forEach((name, i) => {
      const t = result[name];
      const file = path.join(job.out_dir, `out${i}.bin`);
      fs.writeFileSync(file, tensorBytes(t));
      outputs.push({ name, dtype: t.type, shape: t.dims.map(Number), file });
    });
    return { ok: true, outputs, median_ms: median };
  } catch (e) {
    return { ok: false, stage: "run", error: String(e && e.message ? e.message : e) };
  } finally {
    if (session && session.release) {
      try { await session.release(); } catch (_) { /* ignore */ }
    }
  }
}

async function main() {
  const manifest = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const ort = loadOrt();
  for (const job of manifest.jobs) {
    const res = await runJob(ort, job);
    process.stdout.write(JSON.stringify(res) + "\n");
  }
}

main().catch((e) => {
  console.error(`run_onnx: ${e && e.message ? e.message : e}`);
  process.exit(2);
});
