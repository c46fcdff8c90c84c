//! Tenant isolation on every endpoint: user B cannot list, read, change, delete or search
//! user A's buckets, documents or chunks (also through the RPC path with A's `p_user_id`);
//! anon is refused; a service_role token sees everything.

use kb::store::Role;
use serde_json::{Value, json};

use super::{FakeEmbedder, Setup, TestServer, error_code};

const PASSAGE: &str = "Our quarterly pelican migration report covers coastal wetlands and estuaries.";

#[tokio::test]
async fn users_never_see_each_others_data() {
    let server = TestServer::start(Setup::fake()).await;
    let (alice, a) = server.user("a@example.com").await;
    let (_bob, b) = server.user("b@example.com").await;
    let bucket = server.create_bucket(&a, "a-bucket").await;
    let bucket_id = bucket["id"].as_str().expect("test step").to_string();
    let doc = server.upload_text(&a, &bucket_id, "pelicans.txt", PASSAGE).await;
    let done = server.wait_done(&a, &doc).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert!(done["chunk_count"].as_i64().expect("test step") >= 1);
    let bob_bucket = server.create_bucket(&b, "b-bucket").await;
    let c = &server.client;

    // Lists: B sees only its own bucket.
    let listed: Vec<Value> = server.get_json("/v1/buckets", &b).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], bob_bucket["id"]);

    // Every per-id endpoint answers B with 404, the same as for an id that does not exist.
    let bucket_url = server.url(&format!("/v1/buckets/{bucket_id}"));
    let doc_url = server.url(&format!("/v1/documents/{doc}"));
    let checks = vec![
        ("read bucket", c.get(&bucket_url)),
        ("update bucket", c.patch(&bucket_url).json(&json!({ "name": "stolen" }))),
        ("delete bucket", c.delete(&bucket_url)),
        ("list documents", c.get(server.url(&format!("/v1/buckets/{bucket_id}/documents")))),
        (
            "upload into bucket",
            c.post(server.url(&format!("/v1/buckets/{bucket_id}/documents")))
                .json(&json!({ "content": "injected", "file_name": "x.txt" })),
        ),
        ("read document", c.get(&doc_url)),
        ("delete document", c.delete(&doc_url)),
        ("reingest document", c.post(server.url(&format!("/v1/documents/{doc}/reingest")))),
        ("document events", c.get(server.url(&format!("/v1/documents/{doc}/events")))),
    ];
    for (what, request) in checks {
        let response = request.bearer_auth(&b).send().await.expect("request");
        assert_eq!(response.status(), 404, "{what}");
        assert_eq!(error_code(response).await, "not_found", "{what}");
    }

    // Search: B finds nothing of A's, by text, by embedding, or filtered to A's bucket.
    let embedding = FakeEmbedder::vector(PASSAGE);
    for body in [
        json!({ "query": PASSAGE, "threshold": 0.0 }),
        json!({ "embedding": embedding, "threshold": 0.0 }),
        json!({ "query": PASSAGE, "bucket_id": bucket_id, "threshold": 0.0, "mode": "hybrid" }),
    ] {
        let hits: Value = c
            .post(server.url("/v1/search"))
            .bearer_auth(&b)
            .json(&body)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("JSON body");
        assert_eq!(hits["hits"].as_array().expect("test step").len(), 0, "B's search: {hits}");
        let hits: Value = c
            .post(server.url("/v1/search"))
            .bearer_auth(&a)
            .json(&body)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("JSON body");
        assert!(!hits["hits"].as_array().expect("test step").is_empty(), "A's search: {hits}");
    }

    // The RPC path, with A's user id passed by B.
    let rpc = server.url("/rest/v1/rpc/search_knowledge_chunks");
    let params = json!({ "p_user_id": alice, "p_query_embedding": embedding, "p_similarity_threshold": 0.0 });
    let rows: Vec<Value> =
        c.post(&rpc).bearer_auth(&b).json(&params).send().await.expect("request").json().await.expect("JSON body");
    assert!(rows.is_empty(), "B through the RPC with A's id: {rows:?}");
    let rows: Vec<Value> =
        c.post(&rpc).bearer_auth(&a).json(&params).send().await.expect("request").json().await.expect("JSON body");
    assert!(!rows.is_empty(), "A through the RPC");
    assert!(rows[0]["chunk_content"].as_str().expect("test step").contains("pelican"));
    // It is an RPC like any other: select and limit apply to its rows.
    let rows: Vec<Value> = c
        .post(format!("{rpc}?select=document_title,score:similarity_score&limit=1"))
        .bearer_auth(&a)
        .json(&params)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON body");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].as_object().expect("row").len(), 2, "{rows:?}");
    // The checks of its former route hold: a zero vector has no similarity to report, and
    // a limit out of range is the caller's error.
    let zero = vec![0.0f32; embedding.len()];
    let rows: Vec<Value> = c
        .post(&rpc)
        .bearer_auth(&a)
        .json(&json!({ "p_user_id": alice, "p_query_embedding": zero, "p_similarity_threshold": 0.0 }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON body");
    assert!(rows.is_empty(), "{rows:?}");
    let response = c
        .post(&rpc)
        .bearer_auth(&a)
        .json(&json!({ "p_user_id": alice, "p_query_embedding": embedding, "p_limit": 0 }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    // pgvector's text form is accepted too.
    let text = format!("[{}]", embedding.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","));
    let rows: Vec<Value> = c
        .post(&rpc)
        .bearer_auth(&a)
        .json(&json!({ "p_user_id": alice, "p_query_embedding": text, "p_similarity_threshold": 0.0 }))
        .send()
        .await
        .expect("test step")
        .json()
        .await
        .expect("test step");
    assert!(!rows.is_empty(), "A through the RPC with a text vector");

    // Nothing of A's changed.
    assert_eq!(server.count("SELECT count(*) FROM public.knowledge_buckets WHERE name = 'a-bucket'").await, 1);
    assert_eq!(server.count("SELECT count(*) FROM public.knowledge_documents").await, 1);

    // anon is refused everywhere: by kb's API (403), and by the database's privileges through
    // /rest/v1 (401, as PostgREST answers an anonymous permission error).
    let anon = server.token(None, Role::Anon);
    for request in [c.get(server.url("/v1/buckets")), c.get(&doc_url)] {
        let response = request.bearer_auth(&anon).send().await.expect("request");
        assert_eq!(response.status(), 403);
    }
    let response = c.post(&rpc).bearer_auth(&anon).json(&params).send().await.expect("request");
    assert_eq!(response.status(), 401);

    // service_role sees both users' buckets, A's document, and A's chunks through the RPC.
    let service = server.token(None, Role::ServiceRole);
    let listed: Vec<Value> = server.get_json("/v1/buckets", &service).await;
    assert_eq!(listed.len(), 2);
    let response = c.get(&doc_url).bearer_auth(&service).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let rows: Vec<Value> = c
        .post(&rpc)
        .bearer_auth(&service)
        .json(&params)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON body");
    assert!(!rows.is_empty(), "service_role through the RPC with A's id");

    // And A's own writes work: update, then delete.
    let response =
        c.patch(&bucket_url).bearer_auth(&a).json(&json!({ "description": "birds" })).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.expect("JSON body");
    assert_eq!(updated["description"], "birds");
    assert_eq!(updated["name"], "a-bucket");
    let response = c.delete(&bucket_url).bearer_auth(&a).send().await.expect("request");
    assert_eq!(response.status(), 204);
    assert_eq!(server.count("SELECT count(*) FROM public.knowledge_chunks").await, 0, "chunks cascade");
}
