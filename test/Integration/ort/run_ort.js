// Runs an ONNX model with onnxruntime-node (CPU) on raw float32 inputs.
//   node run_ort.js MODEL.onnx OUT.bin REPEAT THREADS NAME=FILE.bin:d0xd1 ...
// Writes the first output as raw float32 to OUT.bin and prints
// {"median_ms": ..., "shape": [...]} on stdout.
const fs = require("fs");
const path = require("path");

const ortDir = process.env.MOE_MLIR_ORT_DIR;
const ort = require(ortDir ? path.join(ortDir) : "onnxruntime-node");

async function main() {
  const [model, out, repeatText, threadsText, ...specs] = process.argv.slice(2);
  const feeds = {};
  for (const spec of specs) {
    const [name, rest] = spec.split("=");
    const [file, dims] = rest.split(":");
    const shape = dims.split("x").map(Number);
    const bytes = fs.readFileSync(file);
    const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    feeds[name] = new ort.Tensor("float32", data, shape);
  }
  const threads = Number(threadsText);
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ["cpu"],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
  });
  let result = await session.run(feeds);
  const times = [];
  for (let i = 0; i < Number(repeatText); ++i) {
    const t0 = process.hrtime.bigint();
    result = await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  const median = times.length ? times[Math.floor(times.length / 2)] : 0;
  const first = result[session.outputNames[0]];
  fs.writeFileSync(out, Buffer.from(first.data.buffer, first.data.byteOffset, first.data.byteLength));
  console.log(JSON.stringify({ median_ms: median, shape: first.dims }));
}

main().catch((e) => {
  console.error(`run_ort: ${e.message}`);
  process.exit(1);
});
