// Drives ImapFlow against Mailhaven the way a service reading mail would: list,
// create, append, fetch, search, flag, move and IDLE.  Prints one JSON report.
// Settings come from the environment (MH_PORT, MH_USER, MH_PASS, MH_CA, MH_MESSAGE).
import { readFileSync } from "node:fs";
import { ImapFlow } from "imapflow";

const options = {
  host: "127.0.0.1",
  port: Number(process.env.MH_PORT),
  secure: true,
  // The certificate is valid for 127.0.0.1; verify it against the test CA.
  tls: { ca: [readFileSync(process.env.MH_CA)], servername: "localhost" },
  auth: { user: process.env.MH_USER, pass: process.env.MH_PASS },
  logger: false,
};
const message = readFileSync(process.env.MH_MESSAGE);
const report = {};

const client = new ImapFlow(options);
await client.connect();
report.capabilities = [...client.capabilities.keys()];
await client.mailboxCreate(["Rechnungen", "Grüße 📬"]);
report.mailboxes = (await client.list()).map((box) => box.path);

await client.append("INBOX", message, ["\\Seen"]);
await client.append("INBOX", "Subject: second\r\n\r\nsecond\r\n");
let lock = await client.getMailboxLock("INBOX");
try {
  const first = await client.fetchOne("1", { source: true, flags: true, envelope: true, uid: true });
  report.source = first.source.toString("base64");
  report.flags = [...first.flags];
  report.subject = first.envelope.subject;
  report.search = await client.search({ seen: false }, { uid: true });
  await client.messageFlagsAdd({ uid: report.search.join(",") }, ["\\Flagged"], { uid: true });
  report.flagged = await client.search({ flagged: true }, { uid: true });
  const moved = await client.messageMove("1", "Rechnungen/Grüße 📬");
  report.moved = moved ? Object.fromEntries(moved.uidMap ?? []) : null;
  report.left = await client.search({ all: true });

  // IDLE: another connection delivers, the idling client hears EXISTS.
  const exists = new Promise((resolve) => client.once("exists", resolve));
  const idle = client.idle();
  const other = new ImapFlow(options);
  await other.connect();
  await other.append("INBOX", "Subject: pushed\r\n\r\npushed\r\n");
  await other.logout();
  const update = await exists;
  report.idle_exists = update.count;
  await client.noop();
  await idle;
} finally {
  lock.release();
}
lock = await client.getMailboxLock("Rechnungen/Grüße 📬");
try {
  report.target = await client.search({ all: true }, { uid: true });
} finally {
  lock.release();
}
await client.logout();
console.log(JSON.stringify(report));
