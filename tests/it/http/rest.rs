//! `/rest/v1` (PostgREST-compatible) over the real schema with row level security, through
//! reqwest: reads, embedding, counts and ranges, writes with every `Prefer`, functions,
//! schema reloads, and hostile input in every position.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use super::{Setup, TestServer};
use kb::store::Role;

fn rest(server: &TestServer, method: Method, path: &str, token: &str) -> RequestBuilder {
    server.client.request(method, server.url(&format!("/rest/v1{path}"))).bearer_auth(token).header("apikey", token)
}

async fn json_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") };
    (status, value)
}

fn header(response: &Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().expect("ascii").to_owned()).unwrap_or_default()
}

/// A company of the user, created through `/rest/v1` (its creator becomes its admin).
async fn company(server: &TestServer, token: &str, name: &str) -> String {
    let response = rest(server, Method::POST, "/companies?select=id,name", token)
        .header("Prefer", "return=representation")
        .json(&json!({ "name": name }))
        .send()
        .await
        .expect("insert company");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body[0]["name"], name);
    body[0]["id"].as_str().expect("id").to_owned()
}

/// Three leads of the company, inserted in one request.
async fn leads(server: &TestServer, token: &str, company: &str) -> Value {
    let rows = json!([
        { "company_id": company, "email": "ada@example.com", "first_name": "Ada", "source": "web", "tags": ["vip", "eu"], "source_details": { "campaign": "spring", "clicks": 3 } },
        { "company_id": company, "email": "bob@example.com", "first_name": "Bob", "source": "ads", "tags": ["eu"], "source_details": { "campaign": "autumn", "clicks": 9 } },
        { "company_id": company, "email": null, "first_name": "Cy", "source": "web", "tags": [], "source_details": null },
    ]);
    let response = rest(
        server,
        Method::POST,
        "/leads?columns=company_id,email,first_name,source,tags,source_details&select=id,email,first_name",
        token,
    )
    .header("Prefer", "return=representation")
    .json(&rows)
    .send()
    .await
    .expect("insert leads");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body.as_array().expect("rows").len(), 3);
    body
}

async fn get(server: &TestServer, path: &str, token: &str) -> (StatusCode, Value) {
    json_of(rest(server, Method::GET, path, token).send().await.expect("request")).await
}

fn emails(rows: &Value) -> Vec<Value> {
    rows.as_array().expect("array").iter().map(|r| r["email"].clone()).collect()
}

#[tokio::test]
async fn reads_filter_order_embed_count_and_stay_within_the_callers_rows() {
    let server = TestServer::start(Setup::fake()).await;
    let (_, a) = server.user("a@rest.test").await;
    let (_, b) = server.user("b@rest.test").await;
    let anon = server.token(None, Role::Anon);
    let acme = company(&server, &a, "Acme").await;
    let inserted = leads(&server, &a, &acme).await;
    let ada = inserted[0]["id"].as_str().expect("id").to_owned();
    company(&server, &b, "Bolt").await;

    // Filters and ordering.
    let (_, rows) = get(&server, "/leads?select=email&order=first_name.desc", &a).await;
    assert_eq!(emails(&rows), vec![Value::Null, json!("bob@example.com"), json!("ada@example.com")]);
    let (_, rows) = get(&server, "/leads?select=email&order=email.asc.nullsfirst", &a).await;
    assert_eq!(emails(&rows), vec![Value::Null, json!("ada@example.com"), json!("bob@example.com")]);
    for (query, expected) in [
        ("email=eq.ada@example.com", vec!["Ada"]),
        ("email=neq.ada@example.com", vec!["Bob"]),
        ("first_name=in.(Ada,Cy)", vec!["Ada", "Cy"]),
        ("first_name=not.in.(Ada,Cy)", vec!["Bob"]),
        ("email=like.*@example.com", vec!["Ada", "Bob"]),
        ("first_name=ilike.a*", vec!["Ada"]),
        ("first_name=match.^[AB]", vec!["Ada", "Bob"]),
        ("email=is.null", vec!["Cy"]),
        ("email=not.is.null", vec!["Ada", "Bob"]),
        ("email=isdistinct.ada@example.com", vec!["Bob", "Cy"]),
        ("tags=cs.{eu}", vec!["Ada", "Bob"]),
        ("tags=cd.{eu,vip}", vec!["Ada", "Bob", "Cy"]),
        ("tags=ov.{vip,x}", vec!["Ada"]),
        ("first_name=like(any).{A*,C*}", vec!["Ada", "Cy"]),
        ("first_name=gte.B", vec!["Bob", "Cy"]),
        ("source_details->>campaign=eq.spring", vec!["Ada"]),
        ("source_details->clicks=gt.5", vec!["Bob"]),
        ("or=(first_name.eq.Ada,email.is.null)", vec!["Ada", "Cy"]),
        ("and=(source.eq.web,or(first_name.eq.Cy,first_name.eq.Bob))", vec!["Cy"]),
        ("not.or=(first_name.eq.Ada,first_name.eq.Bob)", vec!["Cy"]),
        ("first_name=plfts.ada", vec!["Ada"]),
    ] {
        let (status, rows) = get(&server, &format!("/leads?select=first_name&order=first_name&{query}"), &a).await;
        assert_eq!(status, 200, "{query}: {rows}");
        let names: Vec<&str> =
            rows.as_array().expect("rows").iter().map(|r| r["first_name"].as_str().expect("name")).collect();
        assert_eq!(names, expected, "{query}");
    }

    // Aliases, casts and JSON paths in select.
    let (_, rows) = get(&server, "/leads?select=name:first_name,tags::text,campaign:source_details->>campaign,source_details->clicks&email=eq.bob@example.com", &a).await;
    assert_eq!(rows, json!([{ "name": "Bob", "tags": "{eu}", "campaign": "autumn", "clicks": 9 }]));

    // Embedding: many-to-one, one-to-many with its own order and limit, !inner, spread, nested.
    let (_, rows) = get(&server, "/leads?select=first_name,companies(name)&first_name=eq.Ada", &a).await;
    assert_eq!(rows, json!([{ "first_name": "Ada", "companies": { "name": "Acme" } }]));
    let (_, rows) =
        get(&server, "/companies?select=name,leads(first_name)&leads.order=first_name.desc&leads.limit=2", &a).await;
    assert_eq!(rows, json!([{ "name": "Acme", "leads": [{ "first_name": "Cy" }, { "first_name": "Bob" }] }]));
    let (_, rows) = get(&server, "/leads?select=first_name,...companies(company_name:name)&first_name=eq.Cy", &a).await;
    assert_eq!(rows, json!([{ "first_name": "Cy", "company_name": "Acme" }]));
    let (_, rows) = get(&server, "/companies?select=name,leads!inner(first_name)&leads.first_name=eq.Nobody", &a).await;
    assert_eq!(rows, json!([]));
    let (_, rows) = get(&server, "/companies?select=name,leads(first_name)&leads.first_name=eq.Nobody", &a).await;
    assert_eq!(rows, json!([{ "name": "Acme", "leads": [] }]));
    let activity = rest(&server, Method::POST, "/lead_activities", &a)
        .json(&json!({ "lead_id": ada, "activity_type": "email_open" }))
        .send()
        .await
        .expect("insert activity");
    assert_eq!(activity.status(), 201);
    let (_, rows) = get(
        &server,
        "/companies?select=name,leads(first_name,lead_activities(activity_type))&leads.first_name=eq.Ada",
        &a,
    )
    .await;
    assert_eq!(
        rows,
        json!([{ "name": "Acme", "leads": [{ "first_name": "Ada", "lead_activities": [{ "activity_type": "email_open" }] }] }])
    );
    let (_, rows) = get(&server, "/lead_activities?select=activity_type,leads(first_name,companies(name))", &a).await;
    assert_eq!(
        rows,
        json!([{ "activity_type": "email_open", "leads": { "first_name": "Ada", "companies": { "name": "Acme" } } }])
    );
    let (status, error) = get(&server, "/leads?select=*,knowledge_chunks(*)", &a).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (400, Some("PGRST200")), "{error}");
    let (status, error) = get(&server, "/leads?select=email&companies.name=eq.x", &a).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (400, Some("PGRST108")), "{error}");

    // Counting, ranges and their statuses.
    let response = rest(&server, Method::GET, "/leads?select=email&order=first_name&limit=1", &a)
        .header("Prefer", "count=exact")
        .send()
        .await
        .expect("count");
    assert_eq!(response.status(), 206);
    assert_eq!(header(&response, "content-range"), "0-0/3");
    assert_eq!(header(&response, "preference-applied"), "count=exact");
    let response = rest(&server, Method::GET, "/leads?select=first_name&order=first_name", &a)
        .header("Range", "1-2")
        .header("Prefer", "count=exact")
        .send()
        .await
        .expect("range");
    assert_eq!(header(&response, "content-range"), "1-2/3");
    let (status, rows) = json_of(response).await;
    assert_eq!((status.as_u16(), rows), (206, json!([{ "first_name": "Bob" }, { "first_name": "Cy" }])));
    let response =
        rest(&server, Method::GET, "/leads?offset=5", &a).header("Prefer", "count=exact").send().await.expect("416");
    assert_eq!(response.status(), 416);
    let response = rest(&server, Method::GET, "/leads?select=id", &a).send().await.expect("no count");
    assert_eq!(header(&response, "content-range"), "0-2/*");
    for prefer in ["count=planned", "count=estimated"] {
        let response =
            rest(&server, Method::GET, "/leads?limit=1", &a).header("Prefer", prefer).send().await.expect("count");
        let range = header(&response, "content-range");
        assert!(range.starts_with("0-0/") && range[4..].parse::<i64>().is_ok(), "{prefer}: {range}");
    }
    // Below the row limit an estimated count is the exact one.
    let response = rest(&server, Method::GET, "/leads?limit=1", &a)
        .header("Prefer", "count=estimated")
        .send()
        .await
        .expect("count");
    assert_eq!(header(&response, "content-range"), "0-0/3");
    let response =
        rest(&server, Method::HEAD, "/leads", &a).header("Prefer", "count=exact").send().await.expect("head");
    assert_eq!(header(&response, "content-range"), "0-2/3");
    assert!(response.bytes().await.expect("body").is_empty());

    // One object, CSV.
    let response = rest(&server, Method::GET, "/leads?select=first_name&email=eq.ada@example.com", &a)
        .header("Accept", "application/vnd.pgrst.object+json")
        .send()
        .await
        .expect("single");
    assert!(header(&response, "content-type").starts_with("application/vnd.pgrst.object+json"));
    assert_eq!(json_of(response).await.1, json!({ "first_name": "Ada" }));
    let response = rest(&server, Method::GET, "/leads?select=first_name", &a)
        .header("Accept", "application/vnd.pgrst.object+json")
        .send()
        .await
        .expect("single");
    let (status, error) = json_of(response).await;
    assert_eq!(
        (status.as_u16(), error["code"].as_str(), error["details"].as_str()),
        (406, Some("PGRST116"), Some("The result contains 3 rows"))
    );
    let response = rest(&server, Method::GET, "/leads?select=first_name,email,tags&order=first_name", &a)
        .header("Accept", "text/csv")
        .send()
        .await
        .expect("csv");
    assert!(header(&response, "content-type").starts_with("text/csv"));
    assert_eq!(
        response.text().await.expect("csv"),
        "first_name,email,tags\nAda,ada@example.com,\"{vip,eu}\"\nBob,bob@example.com,{eu}\nCy,,{}"
    );
    let response =
        rest(&server, Method::GET, "/leads", &a).header("Accept", "application/xml").send().await.expect("406");
    assert_eq!(json_of(response).await.1["code"], "PGRST107");

    // Another user sees none of it, and changes none of it; anon is refused with 401.
    let (_, rows) = get(&server, "/leads", &b).await;
    assert_eq!(rows, json!([]));
    let (_, rows) = get(&server, "/companies?select=name", &b).await;
    assert_eq!(rows, json!([{ "name": "Bolt" }]));
    let response = rest(&server, Method::PATCH, &format!("/leads?id=eq.{ada}"), &b)
        .json(&json!({ "first_name": "Eve" }))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), 204);
    assert_eq!(header(&response, "content-range"), "*/*");
    let response = rest(&server, Method::DELETE, "/leads", &b).send().await.expect("delete");
    assert_eq!(response.status(), 204);
    assert_eq!(server.count("SELECT count(*) FROM public.leads WHERE first_name IN ('Ada', 'Bob', 'Cy')").await, 3);
    let response = rest(&server, Method::GET, "/leads", &anon).send().await.expect("anon");
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "www-authenticate"), "Bearer");
    assert_eq!(json_of(response).await.1["code"], "42501");
    let response =
        server.client.get(server.url("/rest/v1/leads")).bearer_auth("not.a.jwt").send().await.expect("bad token");
    assert_eq!(response.status(), 401);
    assert!(header(&response, "www-authenticate").starts_with("Bearer error=\"invalid_token\""));
    assert_eq!(json_of(response).await.1["code"], "PGRST301");
    let past = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() - 3600;
    let claims = json!({ "sub": uuid::Uuid::new_v4(), "role": "authenticated", "exp": past });
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(super::SECRET),
    )
    .expect("token");
    let response = server.client.get(server.url("/rest/v1/leads")).bearer_auth(&expired).send().await.expect("expired");
    assert_eq!(
        header(&response, "www-authenticate"),
        "Bearer error=\"invalid_token\", error_description=\"JWT expired\""
    );
    assert_eq!(json_of(response).await.1["message"], "JWT expired");

    // nulls=stripped drops the null-valued keys.
    let response = rest(&server, Method::GET, "/leads?select=first_name,email&first_name=eq.Cy", &a)
        .header("Accept", "application/vnd.pgrst.array+json;nulls=stripped")
        .send()
        .await
        .expect("stripped");
    assert_eq!(json_of(response).await.1, json!([{ "first_name": "Cy" }]));
    let response = rest(&server, Method::GET, "/leads?select=first_name,email&first_name=eq.Cy", &a)
        .header("Accept", "application/vnd.pgrst.object+json;nulls=stripped")
        .send()
        .await
        .expect("stripped");
    assert_eq!(json_of(response).await.1, json!({ "first_name": "Cy" }));
}

#[tokio::test]
async fn writes_honour_prefer_and_postgrest_statuses() {
    let server = TestServer::start(Setup::fake()).await;
    let (_, a) = server.user("writer@rest.test").await;
    let acme = company(&server, &a, "Acme").await;

    // return=minimal (the default): 201, no body.
    let response = rest(&server, Method::POST, "/leads", &a)
        .json(&json!({ "company_id": acme, "source": "web", "first_name": "Min" }))
        .send()
        .await
        .expect("insert");
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "content-range"), "*/*");
    assert!(response.bytes().await.expect("body").is_empty());
    // headers-only: the new row's location.
    let response = rest(&server, Method::POST, "/leads", &a)
        .header("Prefer", "return=headers-only")
        .json(&json!({ "company_id": acme, "source": "web", "first_name": "Loc" }))
        .send()
        .await
        .expect("insert");
    assert_eq!(response.status(), 201);
    let location = header(&response, "location");
    assert!(location.starts_with("/leads?id=eq."), "{location}");
    let (_, rows) = get(&server, &format!("{location}&select=first_name"), &a).await;
    assert_eq!(rows, json!([{ "first_name": "Loc" }]));
    let id = location.trim_start_matches("/leads?id=eq.").to_owned();

    // Upsert on the primary key: merge, then ignore.
    let response = rest(&server, Method::POST, "/leads?select=first_name,source", &a)
        .header("Prefer", "resolution=merge-duplicates, return=representation")
        .json(&json!([{ "id": id, "company_id": acme, "source": "merged", "first_name": "Loc2" }]))
        .send()
        .await
        .expect("upsert");
    assert_eq!(header(&response, "preference-applied"), "resolution=merge-duplicates, return=representation");
    assert_eq!(json_of(response).await.1, json!([{ "first_name": "Loc2", "source": "merged" }]));
    let response = rest(&server, Method::POST, "/leads?select=first_name", &a)
        .header("Prefer", "resolution=ignore-duplicates, return=representation")
        .json(&json!([{ "id": id, "company_id": acme, "source": "ignored", "first_name": "Nope" }]))
        .send()
        .await
        .expect("upsert");
    assert_eq!(json_of(response).await.1, json!([]));
    assert_eq!(
        server.count(&format!("SELECT count(*) FROM public.leads WHERE id = '{id}' AND source = 'merged'")).await,
        1
    );
    // A duplicate key without resolution: 409 with PostgreSQL's code.
    let response = rest(&server, Method::POST, "/leads", &a)
        .json(&json!({ "id": id, "company_id": acme, "source": "dup" }))
        .send()
        .await
        .expect("dup");
    let (status, error) = json_of(response).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (409, Some("23505")), "{error}");

    // missing=default: absent keys take the column default (tags '{}'), not NULL.
    let response =
        rest(&server, Method::POST, "/leads?columns=company_id,source,first_name,tags&select=first_name,tags", &a)
            .header("Prefer", "missing=default, return=representation")
            .json(&json!([{ "company_id": acme, "source": "web", "first_name": "Def" }]))
            .send()
            .await
            .expect("missing default");
    assert_eq!(json_of(response).await.1, json!([{ "first_name": "Def", "tags": [] }]));
    let response = rest(&server, Method::POST, "/leads?columns=company_id,source,first_name,tags&select=tags", &a)
        .header("Prefer", "return=representation")
        .json(&json!({ "company_id": acme, "source": "web", "first_name": "Nul" }))
        .send()
        .await
        .expect("missing null");
    assert_eq!(json_of(response).await.1, json!([{ "tags": null }]));

    // PATCH and DELETE with representation; tx=rollback; max-affected under handling=strict.
    let response = rest(&server, Method::PATCH, "/leads?first_name=eq.Def&select=first_name", &a)
        .header("Prefer", "return=representation")
        .json(&json!({ "first_name": "Def2" }))
        .send()
        .await
        .expect("patch");
    assert_eq!(header(&response, "content-range"), "0-0/*");
    assert_eq!(json_of(response).await, (StatusCode::OK, json!([{ "first_name": "Def2" }])));
    let response = rest(&server, Method::DELETE, "/leads?first_name=eq.Nul", &a)
        .header("Prefer", "return=representation, tx=rollback")
        .send()
        .await
        .expect("rollback");
    assert_eq!(json_of(response).await.1.as_array().map(Vec::len), Some(1));
    assert_eq!(server.count("SELECT count(*) FROM public.leads WHERE first_name = 'Nul'").await, 1, "rolled back");
    let response = rest(&server, Method::DELETE, "/leads", &a)
        .header("Prefer", "handling=strict, max-affected=1")
        .send()
        .await
        .expect("strict");
    let (status, error) = json_of(response).await;
    assert_eq!(
        (status.as_u16(), error["code"].as_str(), error["details"].as_str()),
        (400, Some("PGRST124"), Some("The query affects 4 rows"))
    );
    assert_eq!(server.count("SELECT count(*) FROM public.leads").await, 4, "nothing deleted");
    let response = rest(&server, Method::GET, "/leads", &a)
        .header("Prefer", "handling=strict, bogus=1")
        .send()
        .await
        .expect("strict");
    assert_eq!(json_of(response).await.1["code"], "PGRST122");
    let response = rest(&server, Method::DELETE, "/leads?first_name=eq.Nul", &a).send().await.expect("delete");
    assert_eq!(response.status(), 204);
    assert_eq!(server.count("SELECT count(*) FROM public.leads").await, 3);

    // Bodies and columns that do not fit.
    for (path, body, code) in [
        ("/leads", json!({ "nope": 1 }), "PGRST204"),
        ("/leads?columns=nope", json!({ "source": "x" }), "PGRST204"),
        ("/leads", json!([{ "source": "x" }, { "first_name": "y" }]), "PGRST102"),
        ("/leads", json!(5), "PGRST102"),
        ("/leads?on_conflict=nope", json!({ "source": "x" }), "PGRST100"),
    ] {
        let mut request = rest(&server, Method::POST, path, &a).json(&body);
        if path.contains("on_conflict") {
            request = request.header("Prefer", "resolution=merge-duplicates");
        }
        let (status, error) = json_of(request.send().await.expect("bad write")).await;
        assert!(status.is_client_error(), "{path} {body}: {status} {error}");
        if code != "PGRST100" {
            assert_eq!(error["code"], code, "{path} {body}: {error}");
        }
    }
    let response = rest(&server, Method::POST, "/leads", &a)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("bad json");
    assert_eq!(json_of(response).await.1["code"], "PGRST102");
    let response = rest(&server, Method::POST, "/leads", &a)
        .header("Content-Type", "text/xml")
        .body("<a/>")
        .send()
        .await
        .expect("xml");
    assert_eq!(response.status(), 415);
    assert_eq!(server.count("SELECT count(*) FROM public.leads").await, 3);
}

#[tokio::test]
async fn functions_are_called_by_argument_names_and_the_schema_reloads_on_notify() {
    let server = TestServer::start(Setup::fake()).await;
    let (_, a) = server.user("rpc@rest.test").await;
    // The cache loads on first use; the functions below are created after it.
    let (status, _) = get(&server, "/companies", &a).await;
    assert_eq!(status, 200);
    sqlx::raw_sql(
        "CREATE TABLE public.rest_numbers (n INTEGER PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO public.rest_numbers SELECT n, 'n' || n FROM generate_series(1, 20) n;
         GRANT SELECT, INSERT ON public.rest_numbers TO authenticated;
         CREATE FUNCTION public.rest_numbers_upto(top INTEGER, label TEXT DEFAULT 'n')
           RETURNS SETOF public.rest_numbers LANGUAGE sql STABLE AS
           $$ SELECT n, label || n FROM public.rest_numbers WHERE n <= top $$;
         CREATE FUNCTION public.rest_add(a INTEGER, b INTEGER) RETURNS INTEGER LANGUAGE sql IMMUTABLE AS $$ SELECT a + b $$;
         CREATE FUNCTION public.rest_add(a TEXT, b TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$ SELECT a || b $$;
         CREATE FUNCTION public.rest_echo(payload JSONB) RETURNS JSONB LANGUAGE sql IMMUTABLE AS $$ SELECT payload $$;
         CREATE FUNCTION public.rest_touch() RETURNS VOID LANGUAGE sql AS $$ INSERT INTO public.rest_numbers VALUES (99, 'touched') $$;
         CREATE FUNCTION public.rest_whoami() RETURNS JSONB LANGUAGE sql STABLE AS
           $$ SELECT jsonb_build_object('email', auth.jwt() ->> 'email', 'uid', auth.uid(), 'role', current_user,
                'method', current_setting('request.method'), 'path', current_setting('request.path'),
                'header', current_setting('request.headers')::jsonb ->> 'x-test') $$;
         CREATE FUNCTION public.rest_fail() RETURNS VOID LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'teapot' USING ERRCODE = 'PT418'; END $$;",
    )
    .execute(&server.admin)
    .await
    .expect("functions");
    let (status, error) = get(&server, "/rpc/rest_numbers_upto?top=3", &a).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (404, Some("PGRST202")), "not in the cache yet: {error}");
    sqlx::query("NOTIFY pgrst, 'reload schema'").execute(&server.admin).await.expect("notify");
    let mut reloaded = false;
    for _ in 0..50 {
        if get(&server, "/rpc/rest_numbers_upto?top=3", &a).await.0 == 200 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "NOTIFY pgrst reloads the schema cache");

    // A set of rows: arguments by GET and POST; select, filters, order, limit and count apply.
    let (_, rows) = get(&server, "/rpc/rest_numbers_upto?top=5&select=n&n=gt.2&order=n.desc&limit=2", &a).await;
    assert_eq!(rows, json!([{ "n": 5 }, { "n": 4 }]));
    let response = rest(&server, Method::POST, "/rpc/rest_numbers_upto?select=name&order=n&offset=1&limit=2", &a)
        .header("Prefer", "count=exact")
        .json(&json!({ "top": 4, "label": "x" }))
        .send()
        .await
        .expect("post rpc");
    assert_eq!(header(&response, "content-range"), "1-2/4");
    assert_eq!(json_of(response).await, (StatusCode::PARTIAL_CONTENT, json!([{ "name": "x2" }, { "name": "x3" }])));
    let response = rest(&server, Method::GET, "/rpc/rest_numbers_upto?top=2&n=eq.2", &a)
        .header("Accept", "application/vnd.pgrst.object+json")
        .send()
        .await
        .expect("single rpc");
    assert_eq!(json_of(response).await.1, json!({ "n": 2, "name": "n2" }));
    // Scalars, overloads resolved by argument values' names, a json body, void, errors.
    let response = rest(&server, Method::POST, "/rpc/rest_echo", &a)
        .json(&json!({ "payload": { "k": [1, 2] } }))
        .send()
        .await
        .expect("echo");
    assert_eq!(json_of(response).await.1, json!({ "k": [1, 2] }));
    let (status, error) = get(&server, "/rpc/rest_add?a=1&b=2", &a).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (300, Some("PGRST203")), "{error}");
    let (status, error) = get(&server, "/rpc/rest_numbers_upto?nope=1", &a).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (404, Some("PGRST202")), "{error}");
    let response = rest(&server, Method::POST, "/rpc/rest_touch", &a).json(&json!({})).send().await.expect("void");
    assert_eq!(response.status(), 204);
    assert_eq!(server.count("SELECT count(*) FROM public.rest_numbers WHERE n = 99").await, 1);
    let (status, error) = get(&server, "/rpc/rest_touch", &a).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (405, Some("25006")), "GET runs read-only: {error}");
    let response = rest(&server, Method::POST, "/rpc/rest_fail", &a).json(&json!({})).send().await.expect("fail");
    let (status, error) = json_of(response).await;
    assert_eq!((status.as_u16(), error["message"].as_str()), (418, Some("teapot")));
    let response = rest(&server, Method::PATCH, "/rpc/rest_touch", &a).send().await.expect("patch rpc");
    assert_eq!(json_of(response).await.1["code"], "PGRST101");

    // The function sees the request as PostgREST sets it up: every claim of the token, the
    // role, the method, the path and the lower-cased headers.
    let user = uuid::Uuid::new_v4();
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 600;
    let claims = json!({ "sub": user, "role": "authenticated", "exp": exp, "email": "who@rest.test" });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(super::SECRET),
    )
    .expect("token");
    let response =
        rest(&server, Method::GET, "/rpc/rest_whoami", &token).header("X-Test", "yes").send().await.expect("whoami");
    assert_eq!(
        json_of(response).await.1,
        json!({ "email": "who@rest.test", "uid": user, "role": "authenticated", "method": "GET", "path": "/rpc/rest_whoami", "header": "yes" })
    );

    // The OpenAPI document follows the caller's privileges.
    let (_, doc) = get(&server, "/", &a).await;
    assert!(doc["paths"]["/leads"]["get"].is_object());
    assert!(doc["paths"]["/rpc/search_knowledge_chunks"]["post"].is_object());
    assert!(doc["definitions"]["leads"]["properties"]["email"].is_object());
    let (_, doc) = get(&server, "/", &server.token(None, Role::Anon)).await;
    assert!(doc["paths"]["/leads"].is_null(), "anon has no privileges on leads");
}

#[tokio::test]
async fn profiles_cors_and_unknown_paths() {
    let server = TestServer::start(Setup::fake()).await;
    let (_, a) = server.user("profile@rest.test").await;
    let response = rest(&server, Method::GET, "/companies", &a)
        .header("Accept-Profile", "kb_private")
        .send()
        .await
        .expect("profile");
    let (status, error) = json_of(response).await;
    assert_eq!((status.as_u16(), error["code"].as_str()), (406, Some("PGRST106")), "{error}");
    let response =
        rest(&server, Method::GET, "/companies", &a).header("Accept-Profile", "public").send().await.expect("profile");
    assert_eq!(header(&response, "content-profile"), "public");
    let response = server
        .client
        .request(Method::OPTIONS, server.url("/rest/v1/companies"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), "*");
    assert!(header(&response, "access-control-allow-headers").contains("Prefer"));
    for path in ["/nope", "/companies/x", "/rpc/"] {
        let (status, error) = get(&server, path, &a).await;
        assert_eq!(status, 404, "{path}: {error}");
    }
    let response = rest(&server, Method::PUT, "/companies", &a).send().await.expect("put");
    assert_eq!(json_of(response).await.1["code"], "PGRST117");
}

/// SQL metacharacters and unknown names in every position: a 4xx, never a 5xx, and nothing
/// written.
#[tokio::test]
async fn hostile_input_in_every_position_is_a_client_error() {
    let server = TestServer::start(Setup::fake()).await;
    let (_, a) = server.user("hostile@rest.test").await;
    let acme = company(&server, &a, "Acme").await;
    leads(&server, &a, &acme).await;
    let before = server.count("SELECT count(*) FROM public.leads").await;
    let evil = "x\";DROP TABLE public.leads;--";
    let enc = |s: &str| {
        s.replace('%', "%25")
            .replace('"', "%22")
            .replace(';', "%3B")
            .replace(' ', "%20")
            .replace('\'', "%27")
            .replace('#', "%23")
            .replace('&', "%26")
    };
    let paths = vec![
        format!("/{}", enc(evil)),
        format!("/leads?select={}", enc(evil)),
        format!("/leads?select=alias{}:email", enc(evil)),
        format!("/leads?select=email::{}", enc("text);DROP TABLE public.leads;--")),
        format!("/leads?select=source_details->{}", enc("a'b")),
        format!("/leads?select=source_details->>{}", enc(evil)),
        format!("/leads?{}=eq.1", enc(evil)),
        format!("/leads?email=eq.{}", enc("' OR 1=1 --")),
        format!("/leads?email={}.1", enc("eq;DROP")),
        format!("/leads?order={}", enc(evil)),
        format!("/leads?order=email.{}", enc("desc;DROP")),
        format!("/leads?limit={}", enc("1;DROP")),
        format!("/leads?email=in.({})", enc("a'),('b")),
        format!("/leads?tags=cs.{}", enc("{a'}")),
        format!("/leads?lead_score=gt.{}", enc("1 OR 1=1")),
        format!("/leads?first_name=fts({}).x", enc("english') OR (1=1")),
        format!("/leads?select=*,{}(*)", enc(evil)),
        format!("/leads?or=({})", enc("email.eq.a,\")")),
        format!("/rpc/{}", enc(evil)),
        format!("/leads?select=source_details->{}", enc("0' OR '1")),
        "/leads?select=%00".to_owned(),
        "/leads?email=eq.%00".to_owned(),
    ];
    for path in &paths {
        let response = rest(&server, Method::GET, path, &a).send().await.expect("request");
        let status = response.status();
        let body = response.text().await.expect("body");
        assert!(status.is_client_error() || status == 200, "{path}: {status} {body}");
        assert!(!status.is_server_error(), "{path}: {status} {body}");
    }
    for (path, prefer) in [
        (format!("/leads?on_conflict={}", enc(evil)), "resolution=merge-duplicates"),
        (format!("/leads?columns={}", enc(evil)), "return=minimal"),
        ("/leads".to_owned(), "return=representation;DROP TABLE public.leads"),
    ] {
        let response = rest(&server, Method::POST, &path, &a)
            .header("Prefer", prefer)
            .json(&json!({ "company_id": acme, "source": "evil" }))
            .send()
            .await
            .expect("request");
        let status = response.status();
        assert!(!status.is_server_error(), "{path}: {status}");
    }
    for (name, value) in [("Accept-Profile", evil), ("Range", "0-1;DROP"), ("Accept", evil), ("Prefer", evil)] {
        let response = rest(&server, Method::GET, "/leads", &a).header(name, value).send().await.expect("request");
        assert!(!response.status().is_server_error(), "{name}: {}", response.status());
    }
    let response = rest(&server, Method::PATCH, &format!("/leads?email=eq.{}", enc("x' OR '1'='1")), &a)
        .json(&json!({ "first_name": "pwned" }))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), 204);
    let response = rest(&server, Method::PATCH, "/leads?email=eq.ada@example.com", &a)
        .json(&json!({ "first_name": "'); DROP TABLE public.leads; --" }))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), 204);
    // The value was stored as written, and nothing else changed.
    assert_eq!(
        server.count("SELECT count(*) FROM public.leads WHERE first_name = '''); DROP TABLE public.leads; --'").await,
        1
    );
    assert_eq!(server.count("SELECT count(*) FROM public.leads WHERE first_name = 'pwned'").await, 0);
    // The inserts above either failed or added rows of source 'evil' (the columns= one may not).
    assert_eq!(server.count("SELECT count(*) FROM public.leads WHERE source <> 'evil'").await, before);
}
