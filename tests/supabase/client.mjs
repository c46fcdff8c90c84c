// The real supabase-js client against kb's PostgREST-compatible /rest/v1. Driven by
// tests/it/http/supabase.rs, which starts the server over a fresh database, creates the
// test-only tables rest_test_people, rest_test_teams, rest_test_memberships (many-to-many,
// each row its owner's) and the functions rest_test_numbers(n), rest_test_leads_over(min_score),
// and passes KB_SUPABASE_TEST (JSON):
//   { url, anonKey, a: { id, token }, b: { id, token } }
// Users A and B each create a company (and become its admin); A's rows must stay A's.
// Every check asserts exact rows, counts and error codes as PostgREST answers them. One line
// per passed check on stdout; the first failure exits non-zero with its detail on stderr.
// The last line of stdout is JSON: what the Rust test checks in the database afterwards.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

import { createClient } from "@supabase/supabase-js";
import ws from "ws";

const config = JSON.parse(process.env.KB_SUPABASE_TEST ?? "");

/// A client with `token` as its bearer (none: the anon key's). supabase-js asks for a
/// WebSocket implementation on Node < 22 (its realtime client), though none is opened here.
function client(token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  return createClient(config.url, config.anonKey, {
    global: { headers },
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: ws },
  });
}

const a = client(config.a.token);
const b = client(config.b.token);
const anon = client(null);

let passed = 0;
async function check(label, body) {
  try {
    await body();
  } catch (e) {
    console.error(`not ok ${passed + 1} - ${label}`);
    console.error(e?.stack ?? e);
    process.exit(1);
  }
  passed += 1;
  console.log(`ok ${passed} - ${label}`);
}

/// The data of a successful answer, after checking its status (and count, when given).
function rows(result, status, count) {
  const { data, error } = result;
  assert.equal(error, null, `unexpected error: ${JSON.stringify(error)} (status ${result.status})`);
  assert.equal(result.status, status, `status of ${JSON.stringify(data)}`);
  if (count !== undefined) assert.equal(result.count, count, "count");
  return data;
}

/// A failed answer: its PostgREST error code and HTTP status, and no data.
function failure(result, code, status) {
  const { data, error } = result;
  assert.ok(error, `expected error ${code}, got ${result.status} ${JSON.stringify(data)}`);
  assert.equal(error.code, code, `error code of ${JSON.stringify(error)}`);
  assert.equal(result.status, status, `status of ${JSON.stringify(error)}`);
  assert.equal(data, null, "no data with an error");
  return error;
}

const byName = (x, y) => (x.first_name ?? "").localeCompare(y.first_name ?? "");

// Ids chosen here, so every row is known exactly.
const lead = { ada: randomUUID(), bob: randomUUID(), cyd: randomUUID(), dee: randomUUID() };
const leadB = { ada: randomUUID(), eve: randomUUID() };
const campaign = { c1: randomUUID(), c2: randomUUID(), c3: randomUUID(), c4: randomUUID() };
let companyA;
let companyB;

// ---------------------------------------------------------------- companies (and a trigger)

await check("A creates company 'Acme A' and reads it back with single()", async () => {
  const data = rows(await a.from("companies").insert({ name: "Acme A" }).select("id, name, created_by").single(), 201);
  assert.equal(data.name, "Acme A");
  assert.equal(data.created_by, config.a.id);
  companyA = data.id;
});

await check("B creates company 'Bolt B'", async () => {
  const data = rows(await b.from("companies").insert({ name: "Bolt B" }).select("id, created_by").single(), 201);
  assert.equal(data.created_by, config.b.id);
  companyB = data.id;
});

await check("each user sees only their own company", async () => {
  assert.deepEqual(rows(await a.from("companies").select("id, name"), 200), [{ id: companyA, name: "Acme A" }]);
  assert.deepEqual(rows(await b.from("companies").select("id, name"), 200), [{ id: companyB, name: "Bolt B" }]);
});

await check("the creator became the company's admin (user_roles, by trigger)", async () => {
  const data = rows(await a.from("user_roles").select("user_id, company_id, role"), 200);
  assert.deepEqual(data, [{ user_id: config.a.id, company_id: companyA, role: "admin" }]);
});

// ---------------------------------------------------------------- insert many, with select

const leadRow = (id, company_id, email, first_name, source, company_size, tags, country, annual_revenue, source_details = null) => ({
  id,
  company_id,
  email,
  first_name,
  source,
  company_size,
  tags,
  country,
  annual_revenue,
  source_details,
});

await check("A inserts four leads and gets them back with their trigger-computed scores", async () => {
  const data = rows(
    await a
      .from("leads")
      .insert([
        leadRow(lead.ada, companyA, "ada@a.example", "Ada", "web", "enterprise", ["vip", "eu"], "UK", 5000000, { plan: "pro", seats: 12 }),
        leadRow(lead.bob, companyA, "bob@a.example", "Bob", "referral", "large", ["us"], "US", 100000, { plan: "free", seats: 1 }),
        leadRow(lead.cyd, companyA, "cyd@a.example", "Cyd", "web", "medium", ["eu"], "FR", null),
        leadRow(lead.dee, companyA, null, "Dee", "event", null, [], null, null),
      ])
      .select("id, first_name, email, lead_score, status, tags, created_by"),
    201,
  );
  assert.deepEqual(data.sort(byName), [
    { id: lead.ada, first_name: "Ada", email: "ada@a.example", lead_score: 25, status: "new", tags: ["vip", "eu"], created_by: config.a.id },
    { id: lead.bob, first_name: "Bob", email: "bob@a.example", lead_score: 20, status: "new", tags: ["us"], created_by: config.a.id },
    { id: lead.cyd, first_name: "Cyd", email: "cyd@a.example", lead_score: 15, status: "new", tags: ["eu"], created_by: config.a.id },
    { id: lead.dee, first_name: "Dee", email: null, lead_score: 10, status: "new", tags: [], created_by: config.a.id },
  ]);
});

await check("B inserts two leads into its company (an email A also uses: unique per company only)", async () => {
  const data = rows(
    await b
      .from("leads")
      .insert([
        leadRow(leadB.ada, companyB, "ada@a.example", "Ada", "web", null, [], "UK", null),
        leadRow(leadB.eve, companyB, "eve@b.example", "Eve", "web", null, [], "UK", null),
      ])
      .select("id"),
    201,
  );
  assert.deepEqual(data.map((r) => r.id).sort(), [leadB.ada, leadB.eve].sort());
});

await check("inserting a duplicate primary key answers 23505 (409)", async () => {
  failure(await a.from("leads").insert({ id: lead.ada, company_id: companyA, source: "web" }), "23505", 409);
});

await check("inserting a duplicate email in the same company answers 23505 (409)", async () => {
  failure(await a.from("leads").insert({ company_id: companyA, email: "bob@a.example", source: "web" }), "23505", 409);
});

await check("lead_score is not insertable by users (column privilege): 42501 (403)", async () => {
  failure(await a.from("leads").insert({ company_id: companyA, source: "web", lead_score: 99 }), "42501", 403);
});

await check("A cannot insert a lead into B's company (row level security): 42501 (403)", async () => {
  failure(await a.from("leads").insert({ company_id: companyB, source: "web" }), "42501", 403);
});

await check("A records activities of two leads (insert many with select)", async () => {
  const data = rows(
    await a
      .from("lead_activities")
      .insert([
        { lead_id: lead.ada, activity_type: "email_opened", occurred_at: "2026-01-01T10:00:00+00:00" },
        { lead_id: lead.ada, activity_type: "link_clicked", occurred_at: "2026-01-02T10:00:00+00:00" },
        { lead_id: lead.ada, activity_type: "call", occurred_at: "2026-01-03T10:00:00+00:00" },
        { lead_id: lead.bob, activity_type: "call", occurred_at: "2026-01-04T10:00:00+00:00" },
      ])
      .select("lead_id, activity_type"),
    201,
  );
  assert.equal(data.length, 4);
  assert.deepEqual(
    data.map((r) => `${r.lead_id === lead.ada ? "ada" : "bob"}:${r.activity_type}`).sort(),
    ["ada:call", "ada:email_opened", "ada:link_clicked", "bob:call"],
  );
});

// ---------------------------------------------------------------- select: filters, ordering

await check("order by a column descending (scores rescored by the activities' trigger)", async () => {
  const data = rows(await a.from("leads").select("first_name, lead_score").order("lead_score", { ascending: false }), 200);
  assert.deepEqual(data, [
    { first_name: "Ada", lead_score: 35 },
    { first_name: "Bob", lead_score: 20 },
    { first_name: "Cyd", lead_score: 15 },
    { first_name: "Dee", lead_score: 10 },
  ]);
});

const names = (data) => data.map((r) => r.first_name);

await check("eq", async () => {
  assert.deepEqual(names(rows(await a.from("leads").select("first_name").eq("source", "web").order("first_name"), 200)), ["Ada", "Cyd"]);
});

await check("gt and lt together", async () => {
  const data = rows(await a.from("leads").select("first_name").gt("lead_score", 10).lt("lead_score", 35).order("first_name"), 200);
  assert.deepEqual(names(data), ["Bob", "Cyd"]);
});

await check("gte, lte and neq", async () => {
  const data = rows(
    await a.from("leads").select("first_name").gte("lead_score", 15).lte("lead_score", 35).neq("first_name", "Bob").order("first_name"),
    200,
  );
  assert.deepEqual(names(data), ["Ada", "Cyd"]);
});

await check("in", async () => {
  const data = rows(await a.from("leads").select("first_name").in("country", ["UK", "FR"]).order("first_name"), 200);
  assert.deepEqual(names(data), ["Ada", "Cyd"]);
});

await check("is null", async () => {
  assert.deepEqual(rows(await a.from("leads").select("first_name, email").is("email", null), 200), [{ first_name: "Dee", email: null }]);
});

await check("ilike and like", async () => {
  assert.deepEqual(names(rows(await a.from("leads").select("first_name").ilike("email", "B%"), 200)), ["Bob"]);
  assert.deepEqual(names(rows(await a.from("leads").select("first_name").like("email", "%@a.example").order("first_name"), 200)), [
    "Ada",
    "Bob",
    "Cyd",
  ]);
});

await check("contains on an array column", async () => {
  assert.deepEqual(names(rows(await a.from("leads").select("first_name").contains("tags", ["eu"]).order("first_name"), 200)), ["Ada", "Cyd"]);
});

await check("or", async () => {
  const data = rows(await a.from("leads").select("first_name").or("country.eq.US,company_size.is.null").order("first_name"), 200);
  assert.deepEqual(names(data), ["Bob", "Dee"]);
});

await check("not", async () => {
  const data = rows(await a.from("leads").select("first_name").not("country", "is", null).neq("source", "referral").order("first_name"), 200);
  assert.deepEqual(names(data), ["Ada", "Cyd"]);
});

await check("match and overlaps", async () => {
  assert.deepEqual(names(rows(await a.from("leads").select("first_name").match({ source: "web", country: "UK" }), 200)), ["Ada"]);
  const data = rows(await a.from("leads").select("first_name").overlaps("tags", ["us", "vip"]).order("first_name"), 200);
  assert.deepEqual(names(data), ["Ada", "Bob"]);
});

await check("order by two columns, nulls last and nulls first", async () => {
  const last = rows(
    await a.from("leads").select("first_name").order("annual_revenue", { ascending: false, nullsFirst: false }).order("first_name"),
    200,
  );
  assert.deepEqual(names(last), ["Ada", "Bob", "Cyd", "Dee"]);
  const first = rows(
    await a.from("leads").select("first_name").order("annual_revenue", { ascending: true, nullsFirst: true }).order("first_name"),
    200,
  );
  assert.deepEqual(names(first), ["Cyd", "Dee", "Bob", "Ada"]);
});

await check("JSON paths: filtered on, selected with aliases", async () => {
  const data = rows(
    await a.from("leads").select("first_name, plan:source_details->>plan, seats:source_details->seats").eq("source_details->>plan", "pro"),
    200,
  );
  assert.deepEqual(data, [{ first_name: "Ada", plan: "pro", seats: 12 }]);
});

await check("a renamed, cast column", async () => {
  const data = rows(await a.from("leads").select("name:first_name, score:lead_score::text").order("lead_score").limit(2), 200);
  assert.deepEqual(data, [
    { name: "Dee", score: "10" },
    { name: "Cyd", score: "15" },
  ]);
});

await check("csv()", async () => {
  const data = rows(await a.from("leads").select("first_name,lead_score").order("first_name").csv(), 200);
  assert.equal(data, "first_name,lead_score\nAda,35\nBob,20\nCyd,15\nDee,10");
});

await check("limit", async () => {
  assert.deepEqual(names(rows(await a.from("leads").select("first_name").order("first_name", { ascending: false }).limit(2), 200)), ["Dee", "Cyd"]);
});

await check("B sees only its company's leads, none of A's", async () => {
  const data = rows(await b.from("leads").select("id, email, company_id").order("email"), 200);
  assert.deepEqual(data, [
    { id: leadB.ada, email: "ada@a.example", company_id: companyB },
    { id: leadB.eve, email: "eve@b.example", company_id: companyB },
  ]);
  assert.deepEqual(rows(await b.from("leads").select("id").eq("company_id", companyA), 200), []);
  assert.deepEqual(rows(await b.from("lead_activities").select("id"), 200), []);
});

// ---------------------------------------------------------------- count, range, single

await check("count=exact with head: the count alone", async () => {
  const result = await a.from("leads").select("*", { count: "exact", head: true });
  assert.equal(rows(result, 200, 4), null);
  assert.equal(rows(await b.from("leads").select("*", { count: "exact", head: true }), 200, 2), null);
});

await check("range with count: the page (206) and the total", async () => {
  const data = rows(await a.from("leads").select("first_name", { count: "exact" }).order("first_name").range(1, 2), 206, 4);
  assert.deepEqual(names(data), ["Bob", "Cyd"]);
});

await check("a range past the end, counted: PGRST103 (416)", async () => {
  failure(await a.from("leads").select("id", { count: "exact" }).range(10, 12), "PGRST103", 416);
});

await check("a filtered count", async () => {
  rows(await a.from("leads").select("id", { count: "exact", head: true }).eq("source", "web"), 200, 2);
});

await check("single() with one row: an object", async () => {
  const data = rows(await a.from("leads").select("id, first_name").eq("email", "ada@a.example").single(), 200);
  assert.deepEqual(data, { id: lead.ada, first_name: "Ada" });
});

await check("single() with no row: PGRST116 (406)", async () => {
  failure(await a.from("leads").select("id").eq("email", "nobody@a.example").single(), "PGRST116", 406);
});

await check("single() with two rows: PGRST116 (406)", async () => {
  failure(await a.from("leads").select("id").eq("source", "web").single(), "PGRST116", 406);
});

await check("single() on a row B cannot see: PGRST116 (406)", async () => {
  failure(await b.from("leads").select("id").eq("id", lead.ada).single(), "PGRST116", 406);
});

await check("maybeSingle(): an object, or null without an error", async () => {
  assert.deepEqual(rows(await a.from("leads").select("first_name").eq("id", lead.bob).maybeSingle(), 200), { first_name: "Bob" });
  assert.equal(rows(await a.from("leads").select("first_name").eq("email", "nobody@a.example").maybeSingle(), 200), null);
  assert.equal(rows(await b.from("leads").select("first_name").eq("id", lead.bob).maybeSingle(), 200), null);
});

// ---------------------------------------------------------------- embedded resources

await check("many-to-one: activities embed their lead", async () => {
  const data = rows(await a.from("lead_activities").select("activity_type, leads(first_name)").order("occurred_at"), 200);
  assert.deepEqual(data, [
    { activity_type: "email_opened", leads: { first_name: "Ada" } },
    { activity_type: "link_clicked", leads: { first_name: "Ada" } },
    { activity_type: "call", leads: { first_name: "Ada" } },
    { activity_type: "call", leads: { first_name: "Bob" } },
  ]);
});

await check("an embedding renamed", async () => {
  const data = rows(await a.from("lead_activities").select("activity_type, lead:leads(email)").eq("lead_id", lead.bob), 200);
  assert.deepEqual(data, [{ activity_type: "call", lead: { email: "bob@a.example" } }]);
});

await check("one-to-many: a lead embeds its activities, ordered inside the embedding", async () => {
  const data = rows(
    await a
      .from("leads")
      .select("first_name, lead_activities(activity_type)")
      .in("first_name", ["Ada", "Cyd"])
      .order("first_name")
      .order("occurred_at", { referencedTable: "lead_activities", ascending: false }),
    200,
  );
  assert.deepEqual(data, [
    {
      first_name: "Ada",
      lead_activities: [{ activity_type: "call" }, { activity_type: "link_clicked" }, { activity_type: "email_opened" }],
    },
    { first_name: "Cyd", lead_activities: [] },
  ]);
});

await check("or and limit inside an embedding filter the embedded rows only", async () => {
  const data = rows(
    await a
      .from("leads")
      .select("first_name, lead_activities(activity_type)")
      .or("activity_type.eq.call,activity_type.eq.email_opened", { referencedTable: "lead_activities" })
      .order("occurred_at", { referencedTable: "lead_activities" })
      .limit(1, { referencedTable: "lead_activities" })
      .order("first_name"),
    200,
  );
  assert.deepEqual(data, [
    { first_name: "Ada", lead_activities: [{ activity_type: "email_opened" }] },
    { first_name: "Bob", lead_activities: [{ activity_type: "call" }] },
    { first_name: "Cyd", lead_activities: [] },
    { first_name: "Dee", lead_activities: [] },
  ]);
});

await check("many-to-one: leads embed their company", async () => {
  const data = rows(await a.from("leads").select("first_name, companies(name)").order("first_name").limit(2), 200);
  assert.deepEqual(data, [
    { first_name: "Ada", companies: { name: "Acme A" } },
    { first_name: "Bob", companies: { name: "Acme A" } },
  ]);
});

await check("one-to-many: a company embeds its leads (B: only its own)", async () => {
  const data = rows(await a.from("companies").select("name, leads(first_name)").order("first_name", { referencedTable: "leads" }), 200);
  assert.deepEqual(data, [{ name: "Acme A", leads: [{ first_name: "Ada" }, { first_name: "Bob" }, { first_name: "Cyd" }, { first_name: "Dee" }] }]);
  const seenByB = rows(await b.from("companies").select("name, leads(email)").order("email", { referencedTable: "leads" }), 200);
  assert.deepEqual(seenByB, [{ name: "Bolt B", leads: [{ email: "ada@a.example" }, { email: "eve@b.example" }] }]);
});

await check("!inner embedding filtered on the embedded table", async () => {
  const data = rows(
    await a.from("leads").select("first_name, lead_activities!inner(activity_type)").eq("lead_activities.activity_type", "call").order("first_name"),
    200,
  );
  assert.deepEqual(data, [
    { first_name: "Ada", lead_activities: [{ activity_type: "call" }] },
    { first_name: "Bob", lead_activities: [{ activity_type: "call" }] },
  ]);
});

await check("A fills the many-to-many test tables", async () => {
  assert.equal(rows(await a.from("rest_test_people").insert([{ id: 1, name: "Ann" }, { id: 2, name: "Ben" }]), 201), null);
  assert.equal(rows(await a.from("rest_test_teams").insert([{ id: 10, name: "Red" }, { id: 20, name: "Blue" }]), 201), null);
  const data = rows(
    await a
      .from("rest_test_memberships")
      .insert([
        { person_id: 1, team_id: 10 },
        { person_id: 1, team_id: 20 },
        { person_id: 2, team_id: 10 },
      ])
      .select("person_id, team_id, owner"),
    201,
  );
  assert.equal(data.length, 3);
  assert.ok(data.every((r) => r.owner === config.a.id), "owner defaults to the caller");
});

await check("many-to-many: people embed their teams", async () => {
  const data = rows(
    await a.from("rest_test_people").select("name, rest_test_teams(name)").order("name").order("name", { referencedTable: "rest_test_teams" }),
    200,
  );
  assert.deepEqual(data, [
    { name: "Ann", rest_test_teams: [{ name: "Blue" }, { name: "Red" }] },
    { name: "Ben", rest_test_teams: [{ name: "Red" }] },
  ]);
});

await check("many-to-many the other way: teams embed their people", async () => {
  const data = rows(
    await a.from("rest_test_teams").select("name, rest_test_people(name)").order("name").order("name", { referencedTable: "rest_test_people" }),
    200,
  );
  assert.deepEqual(data, [
    { name: "Blue", rest_test_people: [{ name: "Ann" }] },
    { name: "Red", rest_test_people: [{ name: "Ann" }, { name: "Ben" }] },
  ]);
});

await check("the junction embeds both sides; B sees none of it", async () => {
  const data = rows(
    await a.from("rest_test_memberships").select("rest_test_people(name), rest_test_teams(name)").order("person_id").order("team_id"),
    200,
  );
  assert.deepEqual(data, [
    { rest_test_people: { name: "Ann" }, rest_test_teams: { name: "Red" } },
    { rest_test_people: { name: "Ann" }, rest_test_teams: { name: "Blue" } },
    { rest_test_people: { name: "Ben" }, rest_test_teams: { name: "Red" } },
  ]);
  assert.deepEqual(rows(await b.from("rest_test_people").select("name, rest_test_teams(name)"), 200), []);
});

await check("objects with different keys: NULL for a missing key, or its default with defaultToNull: false", async () => {
  const teams = [
    { id: 30, name: "Green" },
    { id: 40, name: "Gold", owner: config.a.id },
  ];
  // Green's owner is NULL: the row fails the table's policy (checked before NOT NULL).
  failure(await a.from("rest_test_teams").insert(teams), "42501", 403);
  const inserted = await a.from("rest_test_teams").insert(teams, { count: "exact", defaultToNull: false }).select("id, owner");
  assert.deepEqual(rows(inserted, 201, 2), [
    { id: 30, owner: config.a.id },
    { id: 40, owner: config.a.id },
  ]);
});

await check("upsert on a composite primary key (onConflict with two columns)", async () => {
  const data = rows(
    await a
      .from("rest_test_memberships")
      .upsert(
        [
          { person_id: 1, team_id: 10 },
          { person_id: 2, team_id: 20 },
        ],
        { onConflict: "person_id,team_id", ignoreDuplicates: true },
      )
      .select("person_id, team_id"),
    201,
  );
  assert.deepEqual(data, [{ person_id: 2, team_id: 20 }]);
  rows(await a.from("rest_test_memberships").select("*", { count: "exact", head: true }), 200, 4);
});

await check("embedding an unrelated table: PGRST200 (400)", async () => {
  failure(await a.from("leads").select("first_name, rest_test_teams(name)"), "PGRST200", 400);
});

// ---------------------------------------------------------------- upsert

const campaignRow = (id, name, type, channel, budget_allocated) => ({ id, name, type, channel, budget_allocated, company_id: companyA });

await check("A inserts two campaigns", async () => {
  const data = rows(
    await a
      .from("campaigns")
      .insert([campaignRow(campaign.c1, "Spring launch", "email", "newsletter", 1000), campaignRow(campaign.c2, "Summer ads", "ads", "search", 500)])
      .select("id, name, status, created_by"),
    201,
  );
  assert.deepEqual(
    data.sort((x, y) => x.name.localeCompare(y.name)),
    [
      { id: campaign.c1, name: "Spring launch", status: "draft", created_by: config.a.id },
      { id: campaign.c2, name: "Summer ads", status: "draft", created_by: config.a.id },
    ],
  );
});

await check("upsert merging duplicates: one row updated, one inserted", async () => {
  const data = rows(
    await a
      .from("campaigns")
      .upsert(
        [campaignRow(campaign.c1, "Spring launch v2", "email", "newsletter", 1500), campaignRow(campaign.c3, "Autumn SEO", "seo", "blog", 200)],
        { onConflict: "id" },
      )
      .select("id, name, budget_allocated"),
    201,
  );
  assert.deepEqual(
    data.sort((x, y) => x.name.localeCompare(y.name)),
    [
      { id: campaign.c3, name: "Autumn SEO", budget_allocated: 200 },
      { id: campaign.c1, name: "Spring launch v2", budget_allocated: 1500 },
    ],
  );
});

await check("upsert ignoring duplicates: only the new row is inserted and returned", async () => {
  const data = rows(
    await a
      .from("campaigns")
      .upsert([campaignRow(campaign.c2, "IGNORED", "ads", "search", 1), campaignRow(campaign.c4, "Winter social", "social", "social", 50)], {
        ignoreDuplicates: true,
      })
      .select("id, name"),
    201,
  );
  assert.deepEqual(data, [{ id: campaign.c4, name: "Winter social" }]);
  const all = rows(await a.from("campaigns").select("name, budget_allocated").order("name"), 200);
  assert.deepEqual(all, [
    { name: "Autumn SEO", budget_allocated: 200 },
    { name: "Spring launch v2", budget_allocated: 1500 },
    { name: "Summer ads", budget_allocated: 500 },
    { name: "Winter social", budget_allocated: 50 },
  ]);
});

await check("B's upsert onto A's campaign: refused with 42501 (403) when merging, nothing when ignoring", async () => {
  const row = { id: campaign.c1, name: "Taken by B", type: "email", channel: "newsletter", company_id: companyB };
  failure(await b.from("campaigns").upsert(row).select("id"), "42501", 403);
  assert.deepEqual(rows(await b.from("campaigns").upsert(row, { ignoreDuplicates: true }).select("id"), 201), []);
  assert.deepEqual(rows(await b.from("campaigns").select("id"), 200), []);
  assert.deepEqual(rows(await a.from("campaigns").select("name").eq("id", campaign.c1).single(), 200), { name: "Spring launch v2" });
});

// ---------------------------------------------------------------- update

await check("update with select returns the changed rows", async () => {
  const data = rows(await a.from("leads").update({ status: "qualified" }).eq("source", "web").select("first_name, status, lead_score"), 200);
  assert.deepEqual(data.sort(byName), [
    { first_name: "Ada", status: "qualified", lead_score: 35 },
    { first_name: "Cyd", status: "qualified", lead_score: 15 },
  ]);
});

await check("update with count and no representation: 204 and the count", async () => {
  assert.equal(rows(await a.from("leads").update({ country: "DE" }, { count: "exact" }).eq("id", lead.dee), 204, 1), null);
});

await check("B's update of A's leads changes nothing", async () => {
  assert.deepEqual(rows(await b.from("leads").update({ status: "lost" }).eq("company_id", companyA).select("id"), 200), []);
  assert.equal(rows(await b.from("leads").update({ first_name: "Hacked" }, { count: "exact" }).eq("id", lead.ada), 204, 0), null);
  const data = rows(await a.from("leads").select("first_name, status").eq("id", lead.ada).single(), 200);
  assert.deepEqual(data, { first_name: "Ada", status: "qualified" });
});

await check("lead_score is not updatable by users: 42501 (403)", async () => {
  failure(await a.from("leads").update({ lead_score: 100 }).eq("id", lead.bob), "42501", 403);
});

// ---------------------------------------------------------------- delete

await check("B's delete of A's rows deletes nothing", async () => {
  assert.deepEqual(rows(await b.from("leads").delete().eq("company_id", companyA).select("id"), 200), []);
  assert.equal(rows(await b.from("leads").delete({ count: "exact" }).eq("id", lead.bob), 204, 0), null);
  assert.equal(rows(await b.from("companies").delete({ count: "exact" }).eq("id", companyA), 204, 0), null);
  rows(await a.from("leads").select("id", { count: "exact", head: true }), 200, 4);
});

await check("delete with select returns the deleted row", async () => {
  assert.deepEqual(rows(await a.from("leads").delete().eq("email", "cyd@a.example").select("id, first_name"), 200), [
    { id: lead.cyd, first_name: "Cyd" },
  ]);
  assert.equal(rows(await a.from("campaigns").delete({ count: "exact" }).eq("id", campaign.c4), 204, 1), null);
  assert.deepEqual(names(rows(await a.from("leads").select("first_name").order("first_name"), 200)), ["Ada", "Bob", "Dee"]);
});

// ---------------------------------------------------------------- rpc

await check("rpc with a set result, selected, filtered, ordered and limited", async () => {
  const data = rows(
    await a.rpc("rest_test_numbers", { n: 10 }).select("value, square").gt("value", 3).eq("parity", "even").order("value", { ascending: false }).limit(2),
    200,
  );
  assert.deepEqual(data, [
    { value: 10, square: 100 },
    { value: 8, square: 64 },
  ]);
});

await check("rpc with get: true", async () => {
  const data = rows(await a.rpc("rest_test_numbers", { n: 5 }, { get: true }).select("value").lte("square", 9).order("value"), 200);
  assert.deepEqual(data, [{ value: 1 }, { value: 2 }, { value: 3 }]);
});

await check("rpc with head: true and count: the count alone", async () => {
  assert.equal(rows(await a.rpc("rest_test_numbers", { n: 7 }, { head: true, count: "exact" }), 200, 7), null);
});

await check("rpc with count and range: the page (206) and the total", async () => {
  const data = rows(await a.rpc("rest_test_numbers", { n: 7 }, { count: "exact" }).select("value").order("value").range(2, 3), 206, 7);
  assert.deepEqual(data, [{ value: 3 }, { value: 4 }]);
});

await check("rpc returning a table's rows: row level security applies, embedding works", async () => {
  const data = rows(
    await a.rpc("rest_test_leads_over", { min_score: 20 }).select("first_name, lead_score, companies(name)").order("lead_score", { ascending: false }),
    200,
  );
  assert.deepEqual(data, [
    { first_name: "Ada", lead_score: 35, companies: { name: "Acme A" } },
    { first_name: "Bob", lead_score: 20, companies: { name: "Acme A" } },
  ]);
  assert.deepEqual(rows(await b.rpc("rest_test_leads_over", { min_score: 20 }).select("id"), 200), []);
  const mine = rows(await b.rpc("rest_test_leads_over", { min_score: 0 }).select("id").order("email"), 200);
  assert.deepEqual(mine, [{ id: leadB.ada }, { id: leadB.eve }]);
});

await check("rpc of an unknown function: PGRST202 (404)", async () => {
  failure(await a.rpc("rest_test_no_such_function", { n: 1 }), "PGRST202", 404);
});

// ---------------------------------------------------------------- anon

await check("anon reads no table: 42501 (401)", async () => {
  failure(await anon.from("leads").select("id"), "42501", 401);
  failure(await anon.from("companies").select("name"), "42501", 401);
  failure(await anon.from("rest_test_people").select("name"), "42501", 401);
});

await check("anon writes no table: 42501 (401)", async () => {
  failure(await anon.from("companies").insert({ name: "Anon Inc" }), "42501", 401);
  failure(await anon.from("leads").update({ status: "lost" }).eq("id", lead.ada), "42501", 401);
  failure(await anon.from("leads").delete().eq("id", lead.ada), "42501", 401);
});

await check("anon may call a function that reads no table, not one that does", async () => {
  assert.deepEqual(rows(await anon.rpc("rest_test_numbers", { n: 3 }).select("value"), 200), [{ value: 1 }, { value: 2 }, { value: 3 }]);
  failure(await anon.rpc("rest_test_leads_over", { min_score: 0 }), "42501", 401);
});

// ---------------------------------------------------------------- other errors

await check("an unknown column: 42703 (400)", async () => {
  failure(await a.from("leads").select("no_such_column"), "42703", 400);
  failure(await a.from("leads").select("id").eq("no_such_column", 1), "42703", 400);
});

await check("an unknown table: PGRST205 (404)", async () => {
  failure(await a.from("no_such_table").select("*"), "PGRST205", 404);
});

console.log(JSON.stringify({ checks: passed, companyA, companyB, campaign1: campaign.c1 }));
