//! Access history: what the engine reports to the gateway's audit about each statement (the
//! relations and columns read, as written and through views, the column a refusal was for,
//! and the rows sent), only when the gateway asks, and equal to what the client received.

use crate::common::{TestEngine, dataset, test_config};
use crate::data_policy::{CONFIG, analyst_policy, flight, stamp};
use arrow_flight::flight_service_client::FlightServiceClient;
use identity::{ACCESS_HEADER, AccessReport, Mask, REPORT_HEADER, ROWS_HEADER, ReadColumns, STAMP_HEADER};
use tonic::transport::Channel;

const SCOPE: &[&str] = &["demo.customers", "demo.orders", "contacts"];

fn read(name: &str, columns: &[&str]) -> ReadColumns {
    ReadColumns { dataset: dataset(name), columns: columns.iter().map(|c| c.to_string()).collect() }
}

fn report(reply: &testkit::Reply) -> AccessReport {
    let value = reply.headers.get(ACCESS_HEADER).unwrap_or_else(|| panic!("no access report: {}", reply.text()));
    AccessReport::from_header(value.as_bytes()).unwrap()
}

#[tokio::test]
async fn the_engine_reports_the_columns_read_as_written_and_through_views_and_the_rows_sent() {
    let engine = TestEngine::start_with(test_config(Some(CONFIG))).await;
    let scoped = stamp(&engine, SCOPE, &engine.unrestricted);
    let asked =
        |accept: &'static str| [(STAMP_HEADER, scoped.clone()), (REPORT_HEADER, "1".into()), ("accept", accept.into())];
    let send = async |sql: &str, accept: &'static str| {
        let headers = asked(accept);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        engine.http.send("POST", "/v1/sql", &headers, sql.to_string()).await
    };
    // A join: every column counts, the join keys and the WHERE-only column too.
    let joined = send(
        "SELECT c.name, sum(o.amount) AS total FROM demo.customers c JOIN demo.orders o \
         ON c.customer_id = o.customer_id WHERE o.status = 'shipped' GROUP BY c.name",
        "application/json",
    )
    .await;
    assert_eq!(joined.status, 200, "{}", joined.text());
    let expected = vec![
        read("demo.customers", &["customer_id", "name"]),
        read("demo.orders", &["amount", "customer_id", "status"]),
    ];
    assert_eq!(report(&joined), AccessReport { read: expected.clone(), base: expected, ..AccessReport::default() });
    let rows = joined.json().as_array().unwrap().len();
    assert_eq!(joined.headers[ROWS_HEADER], rows.to_string().as_str());
    // A view: as written, the view's columns; underneath, the table's.
    let through = send("SELECT name FROM contacts WHERE email LIKE '%example'", "text/csv").await;
    assert_eq!(through.status, 200, "{}", through.text());
    let access = report(&through);
    assert_eq!(access.read, vec![read("contacts", &["email", "name"])]);
    assert_eq!(access.base, vec![read("demo.customers", &["email", "name"])]);
    assert_eq!(through.headers[ROWS_HEADER], (through.text().lines().count() - 1).to_string().as_str());
    // `count(*)` reads rows, no column; EXPLAIN reads nothing.
    let counted = send("SELECT count(*) AS n FROM demo.orders", "application/json").await;
    assert_eq!(report(&counted).read, vec![read("demo.orders", &[])]);
    let explained = send("EXPLAIN SELECT name FROM demo.customers", "application/json").await;
    assert_eq!(report(&explained), AccessReport::default());

    // A result too large to go out whole: the rows come in a trailer after the last byte,
    // equal to what the client decoded, in every encoding.
    for accept in ["application/json", "text/csv", "application/vnd.apache.arrow.stream"] {
        let headers = asked(accept);
        let mut headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        headers.push(("te", "trailers"));
        let big = engine.http.send("POST", "/v1/sql", &headers, "SELECT unnest(range(0, 100000)) AS n").await;
        assert_eq!(big.status, 200, "{}", big.text());
        assert!(big.headers.get(ROWS_HEADER).is_none(), "streamed: the count cannot be in the head");
        let trailers = big.trailers.as_ref().unwrap_or_else(|| panic!("{accept}: no trailers"));
        assert_eq!(trailers[ROWS_HEADER], "100000", "{accept}");
        let decoded = match accept {
            "application/json" => big.json().as_array().unwrap().len(),
            "text/csv" => big.text().lines().count() - 1,
            _ => datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(big.body.to_vec()), None)
                .unwrap()
                .map(|batch| batch.unwrap().num_rows())
                .sum(),
        };
        assert_eq!(decoded, 100_000, "{accept}");
    }

    // Not asked (a client straight at the engine, or audit off): nothing reported.
    let unasked = engine.http.sql(Some(&scoped), "SELECT name FROM demo.customers").await;
    assert_eq!(unasked.status, 200);
    assert!(unasked.headers.get(ACCESS_HEADER).is_none() && unasked.headers.get(ROWS_HEADER).is_none());
}

#[tokio::test]
async fn a_refusal_for_a_denied_column_names_it_in_the_report_over_http_and_flight() {
    let engine = TestEngine::start_with(test_config(Some(CONFIG))).await;
    let scoped = stamp(&engine, SCOPE, &analyst_policy(Mask::EmailDomain));
    let refused = engine.http.sql(Some(&scoped), "SELECT name FROM demo.customers ORDER BY national_id").await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    let denied = report(&refused).denied.unwrap();
    assert_eq!((denied.dataset.as_str(), denied.column.as_str()), (dataset("demo.customers").as_str(), "national_id"));
    let mut client = flight(&engine, &scoped).await;
    let status = client.execute("SELECT national_id FROM demo.customers".into(), None).await.unwrap_err();
    let arrow_flight::error::FlightError::Tonic(status) = status else { panic!("{status}") };
    let value = status.metadata().get(ACCESS_HEADER).expect("the report in the status");
    assert_eq!(AccessReport::from_header(value.as_bytes()).unwrap().denied.unwrap().column, "national_id");
}

#[tokio::test]
async fn a_flight_ticket_reports_what_it_reads_and_its_rows_in_the_trailers() {
    let engine = TestEngine::start_with(test_config(Some(CONFIG))).await;
    let scoped = stamp(&engine, SCOPE, &engine.unrestricted);
    let mut sql = flight(&engine, &scoped).await;
    let info = sql
        .execute("SELECT unnest(range(0, 5000)) AS n, 'x' AS tag UNION ALL SELECT 1, name FROM contacts".into(), None)
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let channel = Channel::from_shared(engine.flight_url()).unwrap().connect().await.unwrap();
    let mut raw = FlightServiceClient::new(channel);
    for asked in [true, false] {
        let mut request = tonic::Request::new(ticket.clone());
        request.metadata_mut().insert(STAMP_HEADER, scoped.parse().unwrap());
        if asked {
            request.metadata_mut().insert(REPORT_HEADER, "1".parse().unwrap());
        }
        let response = raw.do_get(request).await.unwrap();
        let access = response.metadata().get(ACCESS_HEADER).map(|v| AccessReport::from_header(v.as_bytes()).unwrap());
        let mut stream = response.into_inner();
        let mut messages = 0;
        while stream.message().await.unwrap().is_some() {
            messages += 1;
        }
        assert!(messages > 1);
        let trailers = stream.trailers().await.unwrap().unwrap_or_default();
        if asked {
            let access = access.expect("the access report in the response metadata");
            assert_eq!(access.read, vec![read("contacts", &["name"])]);
            assert_eq!(access.base, vec![read("demo.customers", &["name"])]);
            let rows: u64 = trailers.get(ROWS_HEADER).expect("the rows trailer").to_str().unwrap().parse().unwrap();
            let customers = engine.http.sql(Some(&scoped), "SELECT count(*) AS n FROM demo.customers").await.json();
            assert_eq!(rows, 5000 + customers[0]["n"].as_u64().unwrap());
        } else {
            assert!(access.is_none() && trailers.get(ROWS_HEADER).is_none());
        }
    }
}
