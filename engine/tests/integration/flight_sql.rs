//! Flight SQL against a real engine on loopback, with the arrow-flight Flight SQL client:
//! queries, prepared statements, catalog metadata, and every refusal.

use crate::common::{TestEngine, user};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables};
use arrow_flight::{FlightInfo, Ticket};
use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use futures::TryStreamExt;
use identity::STAMP_HEADER;
use std::sync::Arc;
use tonic::Code;
use tonic::transport::Channel;

async fn channel(engine: &TestEngine) -> Channel {
    Channel::from_shared(engine.flight_url()).unwrap().connect().await.unwrap()
}

async fn client(engine: &TestEngine, stamp: Option<&str>) -> FlightSqlServiceClient<Channel> {
    let mut client = FlightSqlServiceClient::new(channel(engine).await);
    if let Some(stamp) = stamp {
        client.set_header(STAMP_HEADER, stamp);
    }
    client
}

async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let stream = client.do_get(endpoint.ticket.unwrap()).await.unwrap();
        out.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    out
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let col = datafusion::arrow::compute::cast(b.column_by_name(column).unwrap(), &DataType::Utf8).unwrap();
            let col = col.as_string::<i32>().clone();
            (0..col.len()).map(move |i| col.value(i).to_string()).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn statement_query_sees_the_stamped_principal() {
    let engine = TestEngine::start().await;
    let stamp = engine.stamp(&user("alice", &["acme"]));
    let mut client = client(&engine, Some(&stamp)).await;
    let info = client
        .execute("SELECT current_principal() AS p, tenant FROM my_orders ORDER BY order_id".into(), None)
        .await
        .unwrap();
    let batches = fetch(&mut client, info).await;
    assert_eq!(strings(&batches, "p"), vec!["alice"; 4]);
    assert_eq!(strings(&batches, "tenant"), vec!["acme"; 4]);
}

#[tokio::test]
async fn prepared_statement_with_and_without_parameters() {
    let engine = TestEngine::start().await;
    let stamp = engine.stamp(&user("bob", &["globex"]));
    let mut client = client(&engine, Some(&stamp)).await;

    let mut plain = client.prepare("SELECT count(*) AS n FROM my_orders".into(), None).await.unwrap();
    assert_eq!(plain.dataset_schema().unwrap().field(0).name(), "n");
    let batches = fetch(&mut client, plain.execute().await.unwrap()).await;
    assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 4);
    plain.close().await.unwrap();

    let mut with_params = client
        .prepare("SELECT order_id FROM my_orders WHERE order_id > $1 ORDER BY order_id".into(), None)
        .await
        .unwrap();
    assert_eq!(with_params.parameter_schema().unwrap().fields().len(), 1);
    let params = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1005]))],
    )
    .unwrap();
    with_params.set_parameters(params).unwrap();
    let batches = fetch(&mut client, with_params.execute().await.unwrap()).await;
    assert_eq!(strings(&batches, "order_id"), vec!["1006", "1007", "1008"]);
    with_params.close().await.unwrap();
}

/// JDBC / ODBC / BI placeholders (`?`) bind as `$1`, `$2`, … in order; mixing both styles is
/// refused by name; an error while rows stream is a client error, as over HTTP.
#[tokio::test]
async fn question_mark_placeholders_bind_in_order_and_a_division_by_zero_is_invalid_argument() {
    let engine = TestEngine::start().await;
    let stamp = engine.stamp(&user("bob", &["globex"]));
    let mut client = client(&engine, Some(&stamp)).await;
    let mut prepared = client
        .prepare("SELECT order_id FROM my_orders WHERE order_id > ? AND order_id < ? ORDER BY order_id".into(), None)
        .await
        .unwrap();
    let names: Vec<String> = prepared.parameter_schema().unwrap().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["$1", "$2"]);
    let params = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false), Field::new("$2", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1005])), Arc::new(Int64Array::from(vec![1008]))],
    )
    .unwrap();
    prepared.set_parameters(params).unwrap();
    let batches = fetch(&mut client, prepared.execute().await.unwrap()).await;
    assert_eq!(strings(&batches, "order_id"), vec!["1006", "1007"]);
    let mixed = client.prepare("SELECT ? AS a, $1 AS b".into(), None).await.unwrap_err().to_string();
    assert!(mixed.contains("mixes ? and $n placeholders"), "{mixed}");

    let info = client.execute("SELECT 1 / (order_id - order_id) AS x FROM my_orders".into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let failed = match client.do_get(ticket).await {
        Err(error) => error,
        Ok(stream) => futures::TryStreamExt::try_collect::<Vec<_>>(stream).await.unwrap_err(),
    };
    let arrow_flight::error::FlightError::Tonic(status) = failed else { panic!("{failed}") };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(status.message().contains("Divide by zero"), "{status}");
}

#[tokio::test]
async fn catalog_metadata() {
    let engine = TestEngine::start().await;
    let listed = ["datafusion.demo.orders", "datafusion.demo.customers", "datafusion.public.whoami"];
    let stamp = engine.listing_stamp(&user("alice", &[]), &listed);
    let mut client = client(&engine, Some(&stamp)).await;

    let info = client.get_catalogs().await.unwrap();
    let catalogs = fetch(&mut client, info).await;
    assert_eq!(strings(&catalogs, "catalog_name"), vec!["datafusion"]);

    let schemas =
        client.get_db_schemas(CommandGetDbSchemas { catalog: None, db_schema_filter_pattern: None }).await.unwrap();
    let schemas = strings(&fetch(&mut client, schemas).await, "db_schema_name");
    assert!(schemas.contains(&"demo".to_string()) && schemas.contains(&"public".to_string()), "{schemas:?}");

    let tables = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("demo".into()),
            table_name_filter_pattern: Some("ord%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = fetch(&mut client, tables).await;
    assert_eq!(strings(&tables, "table_name"), vec!["orders"]);
    assert_eq!(strings(&tables, "table_type"), vec!["BASE TABLE"]);

    let info = client.get_table_types().await.unwrap();
    let types = fetch(&mut client, info).await;
    assert!(strings(&types, "table_type").contains(&"VIEW".to_string()));

    let info = client.get_sql_info(vec![arrow_flight::sql::SqlInfo::FlightSqlServerName]).await.unwrap();
    let info = fetch(&mut client, info).await;
    assert_eq!(info[0].num_rows(), 1);

    // The listing is the stamp's: tables it does not name (globex.*, acme.*, the views) and
    // schemas holding none of them are not listed.
    let all = CommandGetTables {
        catalog: None,
        db_schema_filter_pattern: None,
        table_name_filter_pattern: None,
        table_types: vec![],
        include_schema: false,
    };
    let info = client.get_tables(all.clone()).await.unwrap();
    let tables = fetch(&mut client, info).await;
    assert_eq!(strings(&tables, "table_name"), vec!["customers", "orders", "whoami"]);
    let schemas =
        client.get_db_schemas(CommandGetDbSchemas { catalog: None, db_schema_filter_pattern: None }).await.unwrap();
    assert_eq!(strings(&fetch(&mut client, schemas).await, "db_schema_name"), vec!["demo", "public"]);
    // A statement ticket keeps the listing of the request that planned it, whatever stamp
    // fetches it; a plain stamp (no listing) lists nothing.
    let info = client.execute("SHOW TABLES".into(), None).await.unwrap();
    let plain = engine.stamp(&user("alice", &[]));
    let mut plain_client = super::flight_sql::client(&engine, Some(&plain)).await;
    let shown = fetch(&mut plain_client, info).await;
    let mut names: Vec<String> = strings(&shown, "table_schema")
        .into_iter()
        .zip(strings(&shown, "table_name"))
        .filter(|(schema, _)| schema != "information_schema")
        .map(|(schema, table)| format!("{schema}.{table}"))
        .collect();
    names.sort();
    assert_eq!(names, vec!["demo.customers", "demo.orders", "public.whoami"]);
    let info = plain_client.get_tables(all).await.unwrap();
    let tables = fetch(&mut plain_client, info).await;
    assert!(strings(&tables, "table_name").is_empty());
}

#[tokio::test]
async fn every_rpc_without_a_valid_stamp_is_unauthenticated() {
    let engine = TestEngine::start().await;
    for stamp in [None, Some("v1.bogus.stamp.here")] {
        let mut client = client(&engine, stamp).await;
        let err = client.execute("SELECT 1".into(), None).await.unwrap_err().to_string();
        assert!(err.contains(Code::Unauthenticated.description()), "{err}");
        let err = client.get_catalogs().await.unwrap_err().to_string();
        assert!(err.contains(Code::Unauthenticated.description()), "{err}");
        let err = client.prepare("SELECT 1".into(), None).await.unwrap_err().to_string();
        assert!(err.contains(Code::Unauthenticated.description()), "{err}");
    }
    // Raw Flight calls (DoGet, ListActions) are refused too, with the gRPC status code.
    let mut raw = FlightServiceClient::new(channel(&engine).await);
    let status = raw.do_get(Ticket::new("anything")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = raw.list_actions(arrow_flight::Empty {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn tickets_and_prepared_statements_are_bound_to_their_creator() {
    let engine = TestEngine::start().await;
    let alice = engine.stamp(&user("alice", &["acme"]));
    let bob = engine.stamp(&user("bob", &["acme"]));
    let mut alice_client = client(&engine, Some(&alice)).await;
    let info = alice_client.execute("SELECT * FROM my_orders".into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();

    let mut raw = FlightServiceClient::new(channel(&engine).await);
    let mut request = tonic::Request::new(ticket.clone());
    request.metadata_mut().insert(STAMP_HEADER, bob.parse().unwrap());
    let status = raw.do_get(request).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // The creator can still use it.
    let batches: Vec<RecordBatch> = alice_client.do_get(ticket).await.unwrap().try_collect().await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 4);

    // Prepared statements: bob can neither execute nor close alice's.
    let mut prepared = alice_client.prepare("SELECT 1 AS one".into(), None).await.unwrap();
    let alice_info = prepared.execute().await.unwrap();
    let prepared_ticket = alice_info.endpoint[0].ticket.clone().unwrap();
    let mut request = tonic::Request::new(prepared_ticket);
    request.metadata_mut().insert(STAMP_HEADER, bob.parse().unwrap());
    assert_eq!(raw.do_get(request).await.unwrap_err().code(), Code::PermissionDenied);
    prepared.close().await.unwrap();

    // Unknown handles are refused.
    let forged = arrow_flight::sql::TicketStatementQuery { statement_handle: vec![7u8; 16].into() };
    let ticket = Ticket::new(prost::Message::encode_to_vec(&arrow_flight::sql::ProstMessageExt::as_any(&forged)));
    let mut request = tonic::Request::new(ticket);
    request.metadata_mut().insert(STAMP_HEADER, alice.parse().unwrap());
    assert_eq!(raw.do_get(request).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn bad_sql_and_writes_are_refused_with_grpc_codes() {
    let engine = TestEngine::start().await;
    let stamp = engine.stamp(&user("alice", &[]));
    let mut client = client(&engine, Some(&stamp)).await;
    let err = client.execute("SELEC 1".into(), None).await.unwrap_err().to_string();
    assert!(err.contains(Code::InvalidArgument.description()), "{err}");
    let err = client.execute("DROP VIEW my_orders".into(), None).await.unwrap_err().to_string();
    assert!(err.contains(Code::PermissionDenied.description()), "{err}");
    let err =
        client.prepare("INSERT INTO demo.orders SELECT * FROM demo.orders".into(), None).await.unwrap_err().to_string();
    assert!(err.contains(Code::PermissionDenied.description()), "{err}");
}

#[tokio::test]
async fn large_generated_result_streams() {
    let engine = TestEngine::start().await;
    let stamp = engine.stamp(&user("alice", &[]));
    let mut client = client(&engine, Some(&stamp)).await;
    let info = client
        .execute("SELECT value, value * 2 AS doubled FROM generate_series(1, 1000000)".into(), None)
        .await
        .unwrap();
    let batches = fetch(&mut client, info).await;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 1_000_000);
}

#[tokio::test]
async fn statement_tickets_hold_no_server_state() {
    // With room for only two prepared statements, statement queries are still unlimited.
    let config = crate::common::test_config(Some("limits:\n  max_flight_handles: 2\n"));
    let engine = TestEngine::start_with(config).await;
    let stamp = engine.stamp(&user("alice", &[]));
    let mut client = client(&engine, Some(&stamp)).await;
    for i in 0..20 {
        let info = client.execute(format!("SELECT {i} AS i"), None).await.unwrap();
        assert_eq!(fetch(&mut client, info).await[0].num_rows(), 1);
    }
    let _a = client.prepare("SELECT 1".into(), None).await.unwrap();
    let _b = client.prepare("SELECT 2".into(), None).await.unwrap();
    let err = client.prepare("SELECT 3".into(), None).await.unwrap_err().to_string();
    assert!(err.contains("too many open Flight statements"), "{err}");
}

#[tokio::test]
async fn a_ticket_that_does_not_decode_gets_a_message_not_debug_output() {
    let engine = TestEngine::start().await;
    let stamp = engine.stamp(&user("alice", &[]));
    let mut raw = FlightServiceClient::new(channel(&engine).await);
    let mut request = tonic::Request::new(Ticket::new("not-a-ticket"));
    request.metadata_mut().insert(STAMP_HEADER, stamp.parse().unwrap());
    let status = raw.do_get(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("not a Flight SQL message"), "{}", status.message());
    assert!(!status.message().contains("DecodeError"), "{}", status.message());
}

#[tokio::test]
async fn flight_resolves_only_the_scope_and_a_ticket_keeps_its_planning_scope() {
    let config = crate::common::test_config(Some(
        "demo_data: true\nviews:\n  - {name: bank, sql: 'SELECT * FROM demo.customers'}\n",
    ));
    let engine = TestEngine::start_with(config).await;
    let alice = user("alice", &["acme"]);
    // What the gateway sends with a DoGet or an execution: no dataset (it cannot read them).
    let nothing = engine.scoped_stamp(&alice, &[]);
    let mut unscoped = client(&engine, Some(&nothing)).await;
    let sql = "WITH ban\u{212A} AS (SELECT 1 AS x) SELECT * FROM bank";
    let error = unscoped.execute(sql.into(), None).await.unwrap_err().to_string();
    assert!(error.contains("dataset datafusion.public.bank was not authorized"), "{error}");
    let error = unscoped.prepare("SELECT * FROM bank".into(), None).await.unwrap_err().to_string();
    assert!(error.contains("not authorized"), "{error}");
    // Planned under a stamp scoped to bank, fetched and executed under the unscoped one.
    let bank = engine.scoped_stamp(&alice, &["bank"]);
    let mut scoped = client(&engine, Some(&bank)).await;
    let info = scoped.execute("SELECT count(*) AS n FROM bank".into(), None).await.unwrap();
    let batches = fetch(&mut unscoped, info).await;
    assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 6);
    let mut prepared = scoped.prepare("SELECT count(*) AS n FROM bank".into(), None).await.unwrap();
    let info = prepared.execute().await.unwrap();
    assert_eq!(fetch(&mut unscoped, info).await[0].column(0).as_primitive::<Int64Type>().value(0), 6);
}

#[tokio::test]
async fn flight_row_filters_are_barriers_no_error_reveals_a_filtered_row() {
    let engine = TestEngine::start().await;
    let stamp = engine.stamp(&user("alice", &["acme"]));
    let mut client = client(&engine, Some(&stamp)).await;
    let oracles = [
        "SELECT order_id FROM my_orders WHERE 1 / CAST(CASE WHEN {p} THEN 0 ELSE 1 END AS BIGINT) = 1",
        "SELECT customer_id FROM my_customers WHERE CAST(CASE WHEN {p} THEN name ELSE '1' END AS INT) = 1",
        "SELECT order_id FROM my_orders WHERE regexp_like('x', CASE WHEN {p} THEN '(' ELSE 'x' END)",
    ];
    for oracle in oracles {
        let mut answers = Vec::new();
        for p in ["tenant = 'nobody'", "tenant = 'globex'"] {
            let info =
                client.execute(oracle.replace("{p}", p), None).await.unwrap_or_else(|e| panic!("{oracle} {p}: {e}"));
            let batches = fetch(&mut client, info).await;
            answers.push(batches.iter().map(|b| b.num_rows()).sum::<usize>());
        }
        assert_eq!(answers[0], answers[1], "{oracle}");
    }
}
