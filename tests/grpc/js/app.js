// A Dapr workflow app written against Dapr's JavaScript SDK only (@dapr/dapr from npm), pointed at
// its sidecar by environment only (DAPR_GRPC_ENDPOINT or DAPR_GRPC_PORT, DAPR_API_TOKEN), as any
// Dapr app is. Headrace's tests (tests/grpc/test_js_sdk.py) run it against `headrace grpc`: its
// WorkflowRuntime runs a chain, a fan-out and a workflow waiting for an external event (their code
// and their activities), its DaprWorkflowClient starts them, raises the event and waits.
//
// Usage: node app.js <instance ID prefix>, prints one JSON line; node app.js --worker, only the
// WorkflowRuntime until killed (tests/grpc/test_remote_faults.py: with FAULT_MARKS, a folder, each
// activity run appends "<name> <input>" to its `act-start`; with FAULT_HOLD=activity, every
// activity then waits until the app is killed).
"use strict";

const fs = require("fs");
const path = require("path");
const { DaprWorkflowClient, WorkflowRuntime, WorkflowRuntimeStatus } = require("@dapr/dapr");

const runs = {}; // how often each activity call ran in this process, by name and input

async function ran(name, input) {
  const key = `${name}/${JSON.stringify(input)}`;
  runs[key] = (runs[key] || 0) + 1;
  if (process.env.FAULT_MARKS) {
    fs.appendFileSync(path.join(process.env.FAULT_MARKS, "act-start"), `${name} ${input}\n`);
    if (process.env.FAULT_HOLD === "activity") await new Promise(() => {});
  }
}

const upper = async (_ctx, text) => {
  await ran("js_upper", text);
  return text.toUpperCase();
};

const exclaim = async (_ctx, text) => {
  await ran("js_exclaim", text);
  return `${text}!`;
};

const square = async (_ctx, n) => {
  await ran("js_square", n);
  return n * n;
};

const chain = async function* (ctx, text) {
  text = yield ctx.callActivity("js_upper", text);
  text = yield ctx.callActivity("js_exclaim", text);
  text = yield ctx.callActivity("js_exclaim", text);
  return text;
};

const fanout = async function* (ctx, numbers) {
  const squares = yield ctx.whenAll(numbers.map((n) => ctx.callActivity("js_square", n)));
  return squares.reduce((a, b) => a + b, 0);
};

const approval = async function* (ctx) {
  ctx.setCustomStatus("waiting");
  const by = yield ctx.waitForExternalEvent("approve");
  const shouted = yield ctx.callActivity("js_upper", by);
  return `approved by ${shouted}`;
};

function outcome(state) {
  if (state === undefined) return { status: null, output: null };
  const status = WorkflowRuntimeStatus ? WorkflowRuntimeStatus[state.runtimeStatus] : state.runtimeStatus;
  return { status, output: state.serializedOutput ?? null };
}

function runtime() {
  return new WorkflowRuntime()
    .registerWorkflowWithName("js_chain", chain)
    .registerWorkflowWithName("js_fanout", fanout)
    .registerWorkflowWithName("js_approval", approval)
    .registerActivityWithName("js_upper", upper)
    .registerActivityWithName("js_exclaim", exclaim)
    .registerActivityWithName("js_square", square);
}

async function main(prefix) {
  const worker = runtime();
  await worker.start();
  const client = new DaprWorkflowClient();
  const seen = {};
  try {
    const wait = 90;
    const chainId = await client.scheduleNewWorkflow("js_chain", "hello", `${prefix}_chain`);
    const fanId = await client.scheduleNewWorkflow("js_fanout", [1, 2, 3, 4, 5], `${prefix}_fanout`);
    const approvalId = await client.scheduleNewWorkflow("js_approval", null, `${prefix}_approval`);
    seen.approval_started = outcome(await client.waitForWorkflowStart(approvalId, false, wait)).status;
    await client.raiseEvent(approvalId, "approve", "ann");
    seen.chain = outcome(await client.waitForWorkflowCompletion(chainId, true, wait));
    seen.fanout = outcome(await client.waitForWorkflowCompletion(fanId, true, wait));
    seen.approval = outcome(await client.waitForWorkflowCompletion(approvalId, true, wait));
    seen.activity_runs = runs;
  } finally {
    await worker.stop();
    await client.stop();
  }
  console.log(JSON.stringify(seen));
}

if (process.argv[2] === "--worker") {
  runtime().start(); // runs until the process is killed
} else {
  main(process.argv[2]).then(
    () => process.exit(0),
    (error) => {
      console.error(error);
      process.exit(1);
    },
  );
}
