// Scenarios that tests/e2e/test_js_sdk.py runs with Modal's JavaScript SDK against a Berth server:
// `node scenarios.mjs NAME '{"json": "params"}'`. Each prints one JSON line, what it saw, and the Python test
// asserts on it. The client reads MODAL_SERVER_URL, MODAL_TOKEN_ID and MODAL_TOKEN_SECRET like the Python one.
import { createHash } from "node:crypto";
import { ModalClient } from "modal";

const APP = "berth-js-sdk";

function sha256(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}

// Bytes counting 0..250 over and over, as the Python side's pattern() makes them.
function pattern(n) {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = i % 251;
  return out;
}

// What an expected failure looked like to the caller: the SDK's error class and its message.
async function failure(promise) {
  try {
    const value = await promise;
    return { resolved: value ?? null };
  } catch (err) {
    return { error: err.constructor.name, message: String(err.message) };
  }
}

const scenarios = {
  async remote(modal) {
    const add = await modal.functions.fromName(APP, "add");
    const describe = await modal.functions.fromName(APP, "describe");
    const bytes = new Uint8Array([0, 1, 254, 255]);
    const described = await describe.remote(["text", 7, 2.5, true, null, [1, "two"], { k: "v" }, bytes], {
      flag: false,
    });
    return {
      sum: await add.remote([2, 40]),
      sumKwargs: await add.remote([], { a: 1, b: 2 }),
      args: described.args.slice(0, 7),
      bytesBack: Array.from(described.args[7]),
      kwargs: described.kwargs,
      types: described.types,
    };
  },

  async spawn(modal, { seconds }) {
    const slow = await modal.functions.fromName(APP, "slow_square");
    const call = await slow.spawn([9, seconds]);
    const again = await modal.functionCalls.fromId(call.functionCallId);
    const early = await failure(again.get({ timeoutMs: 100 }));
    return {
      functionCallId: call.functionCallId,
      early,
      result: await call.get(),
      resultByIdAfter: await again.get(),
    };
  },

  async largeArgs(modal, { size }) {
    const digest = await modal.functions.fromName(APP, "digest");
    const data = pattern(size);
    const remote = await digest.remote([data]);
    const spawned = await (await digest.spawn([data.subarray(0, 64 * 1024)])).get();
    return {
      sent: { length: size, sha256: sha256(data) },
      remote,
      spawned,
      spawnedExpected: sha256(data.subarray(0, 64 * 1024)),
    };
  },

  async largeResult(modal, { size }) {
    const make = await modal.functions.fromName(APP, "pattern");
    const data = await make.remote([size]);
    return { length: data.length, sha256: sha256(data), expected: sha256(pattern(size)) };
  },

  async errors(modal) {
    const fail = await modal.functions.fromName(APP, "fail");
    return {
      raised: await failure(fail.remote(["boom from python"])),
      missingFunction: await failure(modal.functions.fromName(APP, "no_such_function")),
      missingApp: await failure(modal.functions.fromName("no-such-app", "add")),
      missingCall: await failure(modal.functionCalls.fromId("fc-doesnotexist")),
    };
  },

  async lookups(modal) {
    const add = await modal.functions.fromName(APP, "add");
    const byId = await modal.functions.fromId(add.functionId);
    const greeter = await modal.cls.fromName(APP, "Greeter");
    return {
      functionId: add.functionId,
      byIdSum: await byId.remote([20, 22]),
      missingId: await failure(modal.functions.fromId("fu-doesnotexist")),
      greetHi: await (await greeter.instance({ greeting: "hi" })).method("greet").remote(["js"]),
      greetDefault: await (await greeter.instance()).method("greet").remote(["js"]),
      missingCls: await failure(modal.cls.fromName(APP, "NoSuchClass")),
    };
  },

  async appInfo(modal, { created }) {
    const app = await modal.apps.fromName(APP);
    const summary = (info) => ({
      appId: info.appId,
      description: info.description,
      functions: Object.keys(info.functions).sort(),
      functionIds: Object.values(info.functions),
      state: info.lifecycle.state,
      version: info.lifecycle.version ?? null,
      deployed: info.lifecycle.deployedAt !== undefined,
    });
    const made = await modal.apps.fromName(created, { createIfMissing: true });
    return {
      appId: app.appId,
      fromLookup: summary(await app.info()),
      refreshed: summary(await app.info({ refresh: true })),
      created: summary(await made.info({ refresh: true })),
      missing: await failure(modal.apps.fromName(`${created}-missing`)),
    };
  },

  async logs(modal, { word }) {
    const shout = await modal.functions.fromName(APP, "shout");
    const spawned = await shout.spawn([word]);
    const result = await spawned.get();
    const call = await modal.functionCalls.fromId(spawned.functionCallId);
    const messages = async (entries) => {
      const out = [];
      for await (const entry of entries) out.push(entry.message);
      return out;
    };
    // A container's output reaches the log store a moment after its result: wait (bounded) for the line.
    let callLogs = [];
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
      callLogs = await messages(call.logs.fetch());
      if (callLogs.join("").includes(`shouting ${word}\n`)) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const started = Date.now();
    const streamed = await messages(call.logs.stream({ timeoutMs: 60_000 }));
    return {
      result,
      callLogs,
      functionLogs: await messages(shout.logs.tail({ entries: 50 })),
      streamed,
      streamMs: Date.now() - started,
    };
  },

  async statsAndMetrics(modal) {
    const add = await modal.functions.fromName(APP, "add");
    const before = await add.stats();
    await add.remote([1, 2]);
    await add.remote([3, 4]);
    const after = await add.stats();
    const metrics = await add.metrics.export({ groups: ["calls"] });
    return {
      successesAdded: after.inputSuccessCount - before.inputSuccessCount,
      failures: after.inputFailureCount,
      series: Object.keys(metrics.series).sort(),
      schemaGroups: Object.keys(await add.metrics.schema()).sort(),
    };
  },

  async currentStats(modal, { calls, seconds }) {
    const fn = await modal.functions.fromName(APP, "one_at_a_time");
    const before = await fn.getCurrentStats();
    const spawned = [];
    for (let i = 0; i < calls; i++) spawned.push(await fn.spawn([seconds]));
    let maxBacklog = 0;
    let maxRunners = 0;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && (maxBacklog < calls - 1 || maxRunners < 1)) {
      const stats = await fn.getCurrentStats();
      maxBacklog = Math.max(maxBacklog, stats.backlog);
      maxRunners = Math.max(maxRunners, stats.numTotalRunners);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const results = await Promise.all(spawned.map((call) => call.get()));
    return { before, maxBacklog, maxRunners, results, after: await fn.getCurrentStats() };
  },

  async ephemeralQueue(modal) {
    const queue = await modal.queues.ephemeral();
    await queue.put({ a: 1, nested: [1, 2] });
    await queue.putMany([2, "three"]);
    await queue.put("in-p", { partition: "p1" });
    const lenDefault = await queue.len();
    const lenTotal = await queue.len({ total: true });
    const first = await queue.get();
    const rest = await queue.getMany(5);
    const fromPartition = await queue.get({ partition: "p1" });
    const empty = await failure(queue.get({ timeoutMs: 200 }));
    await queue.putMany([1, 2]);
    await queue.put(3, { partition: "p2" });
    await queue.clear();
    const afterClear = await queue.len({ total: true });
    await queue.clear({ all: true });
    const afterClearAll = await queue.len({ total: true });
    queue.closeEphemeral();
    return { queueId: queue.queueId, lenDefault, lenTotal, first, rest, fromPartition, empty, afterClear, afterClearAll };
  },

  async namedQueuePut(modal, { name, values }) {
    const queue = await modal.queues.fromName(name, { createIfMissing: true });
    await queue.putMany(values);
    return { queueId: queue.queueId, len: await queue.len() };
  },

  async namedQueueGet(modal, { name, n }) {
    const queue = await modal.queues.fromName(name);
    const items = [];
    for await (const item of queue.iterate()) items.push(item);
    return { peeked: items, got: await queue.getMany(n, { timeoutMs: 5000 }), lenAfter: await queue.len() };
  },

  async queueNotFoundAndDelete(modal, { name }) {
    const missing = await failure(modal.queues.fromName(`${name}-missing`));
    await modal.queues.fromName(name, { createIfMissing: true });
    await modal.queues.delete(name);
    const afterDelete = await failure(modal.queues.fromName(name));
    return { missing, afterDelete };
  },

  async secrets(modal, { name, key }) {
    const readEnv = await modal.functions.fromName(APP, "read_env");
    const named = await modal.secrets.fromName(name);
    const withKey = await modal.secrets.fromName(name, { requiredKeys: [key] });
    const missingKey = await failure(modal.secrets.fromName(name, { requiredKeys: ["NOT_THERE"] }));
    const missingSecret = await failure(modal.secrets.fromName(`${name}-missing`));
    const fromObject = await modal.secrets.fromObject({ JS_ONLY: "made-in-js" });
    const bound = await readEnv.withOptions({ secrets: [named, fromObject] }).instance();
    return {
      secretId: named.secretId,
      sameId: withKey.secretId === named.secretId,
      missingKey,
      missingSecret,
      fromNamed: await bound.remote([key]),
      fromObject: await bound.remote(["JS_ONLY"]),
      withoutSecret: await readEnv.remote([key]),
      badObject: await failure(modal.secrets.fromObject({ K: 1 })),
    };
  },

  async deleteSecret(modal, { name }) {
    await modal.secrets.delete(name);
    return {
      afterDelete: await failure(modal.secrets.fromName(name)),
      allowMissing: await failure(modal.secrets.delete(name, { allowMissing: true })),
    };
  },

  async sandbox(modal) {
    const app = await modal.apps.fromName(APP, { createIfMissing: true });
    const image = modal.images.fromRegistry("python:3.11-slim-bookworm");
    // The sandbox's own command, with its stdin and stdout.
    const cat = await modal.sandboxes.create(app, image, { command: ["cat"] });
    await cat.stdin.writeText("through the sandbox\n");
    await cat.stdin.close();
    const catOut = await cat.stdout.readText();
    const catExit = await cat.wait();
    // Execs in a long-lived sandbox: output on both streams, stdin, an exit code; then terminate.
    const sb = await modal.sandboxes.create(app, image, { command: ["sleep", "600"] });
    const shell = await sb.exec(["sh", "-c", "echo out; echo err >&2; exit 5"]);
    const execOut = await shell.stdout.readText();
    const execErr = await shell.stderr.readText();
    const execExit = await shell.wait();
    const rev = await sb.exec(["python3", "-c", "import sys; print(sys.stdin.read()[::-1])"]);
    await rev.stdin.writeText("olleh");
    await rev.closeStdin();
    const revOut = await rev.stdout.readText();
    const revExit = await rev.wait();
    const again = await modal.sandboxes.fromId(sb.sandboxId);
    await again.terminate();
    const terminated = await sb.wait();
    const ghost = await modal.sandboxes.fromId("sb-notasandboxnotasandbox00"); // lazy: the wait asks the server
    const missing = await failure(ghost.wait());
    return {
      sandboxId: sb.sandboxId,
      catOut,
      catExit,
      execOut,
      execErr,
      execExit,
      revOut,
      revExit,
      terminated,
      missing,
    };
  },

  async volumes(modal, { name, file }) {
    const readFile = await modal.functions.fromName(APP, "read_file");
    const volume = await modal.volumes.fromName(name);
    const mounted = await readFile.withOptions({ volumes: { "/root/vol": volume } }).instance();
    const created = await modal.volumes.fromName(`${name}-created`, { createIfMissing: true });
    const createdAgain = await modal.volumes.fromName(`${name}-created`);
    const ephemeral = await modal.volumes.ephemeral();
    const readOnly = volume.withMountOptions({ readOnly: true });
    const result = {
      volumeId: volume.volumeId,
      content: await mounted.remote(["vol", file]),
      unmounted: await readFile.remote(["vol", file]),
      readOnlyContent: await (await readFile.withOptions({ volumes: { "/root/ro": readOnly } }).instance()).remote([
        "ro",
        file,
      ]),
      createdSame: created.volumeId === createdAgain.volumeId,
      ephemeralId: ephemeral.volumeId,
      missing: await failure(modal.volumes.fromName(`${name}-missing`)),
    };
    ephemeral.closeEphemeral();
    await modal.volumes.delete(`${name}-created`);
    result.afterDelete = await failure(modal.volumes.fromName(`${name}-created`));
    return result;
  },
};

const [name, params] = process.argv.slice(2);
if (!scenarios[name]) {
  console.error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
const modal = new ModalClient();
try {
  const result = await scenarios[name](modal, JSON.parse(params ?? "{}"));
  console.log(JSON.stringify(result));
} finally {
  modal.close();
}
// The gRPC channel would keep the process alive a while longer; the result is out.
process.exit(0);
