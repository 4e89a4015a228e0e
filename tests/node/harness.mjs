// Starts the real `hearth` binary for the OpenAI Node SDK suite: port 0, a temp
// data dir, address and admin token read from the files the server publishes.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, openSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const MODELS = process.env.HEARTH_MODELS_DIR ?? join(ROOT, ".models");

export const CONFIG = readFileSync(join(ROOT, "tests/config.toml"), "utf8").replaceAll("@MODELS@", MODELS);

export function hearthBin() {
  if (process.env.HEARTH_BIN) return process.env.HEARTH_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(ROOT, "target");
  return join(target, "debug", "hearth");
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function startServer(config = CONFIG) {
  const dir = mkdtempSync(join(tmpdir(), "hearth-node-"));
  const data = join(dir, "data");
  writeFileSync(join(dir, "hearth.toml"), config);
  const log = openSync(join(dir, "server.log"), "w");
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("HEARTH_")));
  const child = spawn(
    hearthBin(),
    ["serve", "--config", join(dir, "hearth.toml"), "--data-dir", data, "--bind", "127.0.0.1:0"],
    { stdio: ["ignore", log, log], env },
  );
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(readFileSync(join(dir, "server.log"), "utf8"));
    try {
      const info = JSON.parse(readFileSync(join(data, "server.json"), "utf8"));
      if (info.pid === child.pid) {
        const res = await fetch(`http://${info.addr}/healthz`);
        if (res.ok) {
          return {
            addr: info.addr,
            baseURL: `http://${info.addr}/v1`,
            url: (p) => `http://${info.addr}${p}`,
            adminToken: readFileSync(join(data, "admin.token"), "utf8").trim(),
            createKey: (...args) =>
              execFileSync(hearthBin(), ["--data-dir", data, "keys", "create", ...args], { encoding: "utf8" })
                .trim()
                .split("\n")
                .at(-1),
            stop: async () => {
              child.kill("SIGTERM");
              await new Promise((r) => child.once("exit", r));
            },
          };
        }
      }
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error("hearth did not start");
    await sleep(50);
  }
}
