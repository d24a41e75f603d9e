// Publishes both jobs the way the README shows the product's web app doing it, through
// the unmodified @upstash/qstash SDK. Prints one JSON line per publish: the SDK's answer.
import { createHash, randomUUID } from "node:crypto";
import { Client } from "@upstash/qstash";

const qstash = new Client({ token: process.env.QSTASH_TOKEN, baseUrl: process.env.QSTASH_URL });
const jobs = process.env.JOBS_BASE_URL;
const sha = (...parts) => createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 40);

const idempotencyKey = process.env.IDEMPOTENCY_KEY ?? `notify-${randomUUID().replaceAll("-", "")}`;
const notify = await qstash.publishJSON({
  url: `${jobs}/api/jobs/notify-collaborators`,
  body: { tripId: "trip-js", event: "trip_updated", collaboratorIds: ["u1", "u2"], message: "Sent from the web app", idempotencyKey },
  retries: 3,
  retryDelay: "min(300000, 10000 * pow(2, retried))",
  timeout: "120s",
  deduplicationId: `notify-collaborators-${sha(idempotencyKey)}`,
  label: "notify-collaborators",
  failureCallback: `${jobs}/api/jobs/failed`,
});
console.log(JSON.stringify({ job: "notify-collaborators", ...notify }));

const [userId, conversationId, revision] = ["u1", "c-js", "m00001"];
const sync = await qstash.publishJSON({
  url: `${jobs}/api/jobs/memory-sync`,
  body: { userId, conversationId, syncType: "incremental" },
  retries: 3,
  retryDelay: "min(600000, 30000 * pow(2, retried))",
  timeout: "300s",
  deduplicationId: `memory-sync-${sha(userId, conversationId, "incremental", revision)}`,
  flowControl: { key: `memory-sync-${sha(userId, conversationId)}`, parallelism: 1 },
  label: "memory-sync",
  failureCallback: `${jobs}/api/jobs/failed`,
});
console.log(JSON.stringify({ job: "memory-sync", ...sync }));
