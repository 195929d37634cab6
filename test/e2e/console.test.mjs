// Browser end-to-end tests of the web console, against the local stack
// (go run ./cmd/stack, every port picked by the OS). Headless Debian
// chromium, driven by playwright-core; no browser is ever downloaded.
//
// Environment: STACK_BIN (a built ./cmd/stack; default: built here),
// CHROMIUM (default /usr/bin/chromium), SCREENSHOT_DIR (default
// .ci/artifacts/screenshots), KCAT (default kcat).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const token = "e2e-token";
const shots = path.resolve(repo, process.env.SCREENSHOT_DIR || ".ci/artifacts/screenshots");
const kcat = process.env.KCAT || "kcat";
const run = Date.now().toString(36); // urns unique per run
let work, stack, stackLog = "", api, partners, broker, context;

// waitFor polls check until it returns a truthy value, for at most ms.
async function waitFor(what, check, ms = 45000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`timed out waiting for ${what}; last: ${last}\n--- stack log tail:\n${stackLog.slice(-3000)}`);
}

// produce sends one record, key|value, to topic.
function produce(topic, key, value) {
  execFileSync(kcat, ["-P", "-b", broker, "-t", topic, "-K", "\u0001"], { input: `${key}\u0001${value}\n` });
}

// consume returns every record's headers of topic, one line each.
function consumeHeaders(topic) {
  return execFileSync(kcat, ["-C", "-b", broker, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%h\n"]).toString();
}

function command(urn, event, payload) {
  return JSON.stringify({ urn, event, payload });
}

const request = (urn, extra = {}) =>
  command(urn, "prescription.request", {
    patientId: "p1", prescriberId: "d1", pharmacyId: "ph1",
    medication: { name: "Amoxicillin", quantity: 20 }, ...extra,
  });

async function sim(pathAndQuery) {
  const res = await fetch(partners + pathAndQuery, { method: "POST" });
  assert.equal(res.status, 200, `simulator control ${pathAndQuery}`);
}

// watch fails the test on any dialog, page error or console error.
function watch(page) {
  const problems = [];
  page.on("dialog", (d) => {
    problems.push(`dialog ${d.type()}: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  return problems;
}

async function signedInPage() {
  const page = await context.newPage();
  const problems = watch(page);
  return { page, problems };
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

// timelineTypes opens urn's page until it shows n events, and returns their types.
async function timelineTypes(page, urn, n) {
  return waitFor(`${n} events of ${urn}`, async () => {
    await page.goto(`${api}/console/prescription?urn=${encodeURIComponent(urn)}`);
    const types = await page.locator("#timeline > li").evaluateAll((els) => els.map((e) => e.dataset.type));
    return types.length >= n ? types : null;
  });
}

before(async () => {
  mkdirSync(shots, { recursive: true });
  work = mkdtempSync(path.join(tmpdir(), "rxflow-e2e-"));
  let bin = process.env.STACK_BIN;
  if (!bin) {
    bin = path.join(work, "stack");
    execFileSync("go", ["build", "-o", bin, "./cmd/stack"], { cwd: repo, stdio: "inherit" });
  }
  const any = "127.0.0.1:0";
  stack = spawn(bin, ["-data", path.join(work, "data"), "-token", token, "-api-addr", any, "-esdb-addr", any,
    "-kafka-addr", any, "-partners-addr", any, "-processor-addr", any], { stdio: ["ignore", "pipe", "pipe"] });
  stack.stdout.on("data", (b) => (stackLog += b));
  stack.stderr.on("data", (b) => (stackLog += b));
  await waitFor("the stack's addresses", () => {
    api = /query API\s+(http:\/\/\S+)/.exec(stackLog)?.[1];
    partners = /partner simulators\s+(http:\/\/\S+)/.exec(stackLog)?.[1];
    broker = /Kafka \(embedded\)\s+(\S+)/.exec(stackLog)?.[1];
    return api && partners && broker;
  });
  await waitFor("the projector ready", async () => (await fetch(api + "/readyz")).ok);

  // A fresh profile per run (launchPersistentContext's user data dir).
  context = await chromium.launchPersistentContext(path.join(work, "chromium"), {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
      "--disable-component-update", "--disable-sync", "--disable-quic"],
    viewport: { width: 1280, height: 900 },
  });
  // Sign in once through the form: the session cookie serves every page after.
  const page = await context.newPage();
  await page.goto(`${api}/console/`);
  assert.match(page.url(), /\/console\/login$/, "an unsigned visitor is sent to the sign-in page");
  await shot(page, "login");
  await page.fill("input[name=token]", "wrong");
  await page.click("button[type=submit]");
  await page.locator(".error").waitFor();
  await page.fill("input[name=token]", token);
  await page.click("button[type=submit]");
  await page.waitForURL(`${api}/console/`);
  await page.close();
});

after(async () => {
  await context?.close();
  if (stack) {
    stack.kill("SIGTERM");
    await new Promise((r) => stack.once("exit", r));
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

test("happy path: five events in order on the prescription page", async () => {
  const urn = `urn:rx:e2e-happy-${run}`;
  produce("prescription.events", urn, request(urn));
  produce("prescription.events", urn, command(urn, "prescription.approve", { approvedBy: "d1" }));
  produce("prescription.events", urn, command(urn, "prescription.process", {}));
  produce("prescription.events", urn, command(urn, "prescription.dispense", { dispensedBy: "pharmacist", quantity: 20 }));
  produce("prescription.events", urn, command(urn, "prescription.complete", {}));
  const { page, problems } = await signedInPage();
  const types = await timelineTypes(page, urn, 5);
  assert.deepEqual(types, ["PrescriptionRequested", "PrescriptionApproved", "PrescriptionProcessingStarted",
    "PrescriptionDispensed", "PrescriptionCompleted"]);
  await page.selectOption("select[name=asOf]", "1");
  await page.click("form:has(select[name=asOf]) button");
  assert.match(await page.locator("#as-of").innerText(), /At revision 1 .*approved/);
  await shot(page, "prescription");

  await page.goto(`${api}/console/prescriptions?status=completed`);
  await page.locator(`#prescriptions a:text-is("${urn}")`).waitFor();
  await shot(page, "prescriptions");

  await page.goto(`${api}/console/`);
  await page.locator("#workflow svg").waitFor(); // the vendored Mermaid drew the diagram
  assert.ok(Number(await page.locator('#state-counts td[data-status="completed"]').innerText()) >= 1);
  await shot(page, "overview");
  assert.deepEqual(problems, []);
});

test("pharmacy failure: parked, retried after the simulator heals, shown done", async () => {
  const urn = `urn:rx:e2e-parked-${run}`;
  await sim("/_sim/down?partner=pharmacy&down=true");
  try {
    // dispense right after process: the projector's prescription.fail
    // arrives too late and is refused, so the pharmacy call is parked.
    produce("prescription.events", urn, request(urn));
    produce("prescription.events", urn, command(urn, "prescription.approve", { approvedBy: "d1" }));
    produce("prescription.events", urn, command(urn, "prescription.process", {}));
    produce("prescription.events", urn, command(urn, "prescription.dispense", { dispensedBy: "pharmacist", quantity: 20 }));
    const { page, problems } = await signedInPage();
    const row = page.locator(`#parked tr[data-urn="${urn}"]`);
    await waitFor("the parked pharmacy call", async () => {
      await page.goto(`${api}/console/operations`);
      return (await row.count()) === 1;
    });
    await shot(page, "operations-parked");
    await sim("/_sim/down?partner=pharmacy&down=false");
    await row.locator("button", { hasText: "Retry" }).click();
    assert.equal(await page.locator("#action-result [data-result]").getAttribute("data-result"), "done");
    await page.goto(`${api}/console/prescription?urn=${encodeURIComponent(urn)}`);
    assert.equal(await page.locator('#effects tr[data-projector="pharmacy"] .outcome').getAttribute("data-status"), "done");
    assert.match(await page.locator("#actions").innerText(), /retry\s+pharmacy\/\S+.*done/s);
    await page.goto(`${api}/console/operations`);
    assert.equal(await row.count(), 0, "no longer parked");
    assert.deepEqual(problems, []);
  } finally {
    await sim("/_sim/down?partner=pharmacy&down=false");
  }
});

test("dead letter: redriven after an edit gets processed; a second redrive does nothing", async () => {
  const urn = `urn:rx:e2e-dlq-${run}`;
  produce("prescription.events", urn, `{"urn": "${urn}", "event": `);
  const { page, problems } = await signedInPage();
  const letter = page.locator(`article.deadletter[data-key="${urn}"]`);
  await waitFor("the dead letter", async () => {
    await page.goto(`${api}/console/operations`);
    return (await letter.count()) === 1;
  });
  assert.match(await letter.locator("h3").innerText(), /malformed_json/);
  await shot(page, "operations-deadletter");
  await letter.locator("textarea[name=value]").fill(request(urn));
  await letter.locator("button", { hasText: "Redrive edited" }).click();
  assert.equal(await page.locator("#action-result [data-result]").getAttribute("data-result"), "done");
  assert.deepEqual(await timelineTypes(page, urn, 1), ["PrescriptionRequested"]);

  await page.goto(`${api}/console/operations`);
  // The redrive is on the command topic before the answer: count redriven records there.
  const redrives = () => consumeHeaders("prescription.events").split("\n").filter((h) => h.includes("redrive-of=")).length;
  const before = redrives();
  assert.ok(before >= 1, "the redrive is on the command topic");
  await letter.locator("button", { hasText: "Redrive as is" }).click();
  assert.equal(await page.locator("#action-result [data-result]").getAttribute("data-result"), "already_redriven");
  assert.equal(redrives(), before, "the second redrive published nothing");
  assert.deepEqual(problems, []);
});

test("untrusted text is shown as text and runs no script", async () => {
  const urn = `urn:rx:e2e-xss-${run}`;
  const script = "<script>alert('script')</script>";
  const img = `"><img src=x onerror=alert('img')>`;
  const js = "javascript:alert('url')";
  produce("prescription.events", urn, request(urn, { patientId: js, medication: { name: img, quantity: 1, strength: script } }));
  produce("prescription.events", urn, `{"urn":"${urn}","event":"${script}","payload":{"note":"${img.replaceAll('"', '\\"')}","link":"${js}"}}`);
  const { page, problems } = await signedInPage();
  await timelineTypes(page, urn, 1);
  // textContent: the raw JSON is folded away in <details>, yet must be text too.
  const text = await page.locator("main").textContent();
  for (const s of [img, js, script]) assert.ok(text.includes(s), `the prescription page shows ${s} as text`);
  await page.goto(`${api}/console/prescriptions?patientId=${encodeURIComponent(js)}`);
  assert.ok((await page.locator("#prescriptions").innerText()).includes(img));
  const letter = page.locator(`article.deadletter[data-key="${urn}"]`);
  await waitFor("the hostile dead letter", async () => {
    await page.goto(`${api}/console/operations`);
    return (await letter.count()) === 1;
  });
  assert.ok((await letter.locator("pre.value").innerText()).includes(script));
  await shot(page, "operations-untrusted");
  assert.equal(await page.locator("main img").count(), 0, "no injected element");
  assert.deepEqual(problems, [], "no dialog, page error or console error");
});
