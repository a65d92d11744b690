//! Arrow Flight SQL: statement queries, prepared statements and catalog metadata.
//!
//! Every RPC first passes [`authenticate`] (a tonic interceptor), which verifies the stamp
//! and puts the caller into the request's extensions; a handler without a caller refuses.
//! Tickets and prepared-statement handles are bound to the caller that created them.

pub mod handles;
pub(crate) mod result_trailers;
mod session;
pub mod tickets;

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::FlightData;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    Any, CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandPreparedStatementQuery, CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::TableType;
use datafusion::prelude::DataFrame;
use futures::{Stream, StreamExt, TryStreamExt};
use identity::{Principal, STAMP_HEADER, StatementLimits};
use prost::Message;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::caller::listing::Listing;
use crate::caller::scope::Scope;
use crate::caller::{Authenticator, Caller, PolicyFingerprint};
use crate::error::EngineError;
use crate::flight::handles::HandleStore;
use crate::flight::tickets::Planned;
use crate::flight::tickets::TicketSealer;
use crate::query::QueryEngine;

type DataStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

pub struct FlightSqlEngine {
    engine: Arc<QueryEngine>,
    /// Statement tickets: stateless, sealed.
    tickets: TicketSealer,
    /// Prepared statements: stateful until closed or expired.
    handles: HandleStore,
    sql_info: SqlInfoData,
}

impl std::fmt::Debug for FlightSqlEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightSqlEngine").finish_non_exhaustive()
    }
}

/// Authenticates every Flight RPC before it reaches a handler: verifies the stamp and puts
/// the caller into the request's extensions.
#[derive(Clone, Debug)]
pub struct Authenticate(Arc<Authenticator>);

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let stamp = request.metadata().get(STAMP_HEADER).map(|v| v.as_bytes());
        let caller = self.0.authenticate(stamp).map_err(Status::from)?;
        request.extensions_mut().insert(caller.principal);
        request.extensions_mut().insert(caller.listing);
        request.extensions_mut().insert(caller.scope);
        request.extensions_mut().insert(caller.policy);
        request.extensions_mut().insert(Decided(caller.data));
        request.extensions_mut().insert(Limited(caller.limits));
        Ok(request)
    }
}

/// The Flight service, wrapped so that no RPC reaches a handler without a verified caller.
pub fn service(
    engine: Arc<QueryEngine>,
    auth: Arc<Authenticator>,
    handles: HandleStore,
    ticket_ttl_secs: u64,
) -> Result<InterceptedService<FlightServiceServer<FlightSqlEngine>, Authenticate>, EngineError> {
    let sql_info = sql_info().map_err(|e| EngineError::Internal(e.to_string()))?;
    let tickets = TicketSealer::new(ticket_ttl_secs)?;
    let server = FlightServiceServer::new(FlightSqlEngine { engine, tickets, handles, sql_info })
        .max_decoding_message_size(16 * 1024 * 1024);
    Ok(InterceptedService::new(server, Authenticate(auth)))
}

fn sql_info() -> Result<SqlInfoData, FlightError> {
    let mut builder = SqlInfoDataBuilder::new();
    builder.append(SqlInfo::FlightSqlServerName, "Portcullis engine");
    builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    builder.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    builder.append(SqlInfo::FlightSqlServerReadOnly, true);
    builder.append(SqlInfo::FlightSqlServerSql, true);
    builder.append(SqlInfo::FlightSqlServerSubstrait, false);
    builder.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    builder.append(SqlInfo::FlightSqlServerCancel, false);
    builder.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    builder.build()
}

/// arrow-flight answers a ticket or command that does not decode with the decoder's Debug
/// output (`DecodeError { description: ... }`): say what is wrong instead.
pub fn readable_status<B>(mut response: http::Response<B>) -> http::Response<B> {
    let debug_output = response.headers().get("grpc-message").is_some_and(|m| m.as_bytes().starts_with(b"DecodeError"));
    if debug_output {
        response.headers_mut().insert(
            "grpc-message",
            http::HeaderValue::from_static(
                "the ticket or command is not a Flight SQL message (a ticket comes from GetFlightInfo)",
            ),
        );
    }
    response
}

/// What a catalog listing may show the caller (put there by the interceptor; nothing
/// without it).
fn listing<T>(request: &Request<T>) -> Listing {
    request.extensions().get::<Listing>().cloned().unwrap_or_else(Listing::nothing)
}

/// What the request's statement may resolve (put there by the interceptor; nothing without
/// it).
fn scope<T>(request: &Request<T>) -> Scope {
    request.extensions().get::<Scope>().cloned().unwrap_or_else(Scope::nothing)
}

/// The row and column decisions of the request's stamp, put there by the interceptor.
#[derive(Clone)]
struct Decided(Arc<[identity::DatasetPolicy]>);

/// What the request's own statement is, with what its stamp lets it list and resolve and the
/// row and column decisions it carries.
fn planned<T>(request: &Request<T>, sql: &str) -> Planned {
    Planned { sql: sql.into(), listing: listing(request), scope: scope(request), data: decided(request) }
}

/// The row and column decisions of the request's stamp (none without the interceptor's).
fn decided<T>(request: &Request<T>) -> Arc<[identity::DatasetPolicy]> {
    request.extensions().get::<Decided>().map_or_else(|| Arc::from(Vec::new()), |d| Arc::clone(&d.0))
}

/// The statement limits of the request's stamp, put there by the interceptor.
#[derive(Clone)]
struct Limited(Option<Arc<StatementLimits>>);

/// The statement limits of the request's stamp (none without the interceptor's).
fn limits<T>(request: &Request<T>) -> Option<Arc<StatementLimits>> {
    request.extensions().get::<Limited>().and_then(|l| l.0.clone())
}

/// The policy fingerprint of the request's stamp, put there by the interceptor.
fn policy<T>(request: &Request<T>) -> PolicyFingerprint {
    request.extensions().get::<PolicyFingerprint>().cloned().unwrap_or_default()
}

/// The caller put there by the interceptor.
fn caller<T>(request: &Request<T>) -> Result<Arc<Principal>, Status> {
    request
        .extensions()
        .get::<Arc<Principal>>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("identity stamp missing"))
}

fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(message.0)
}

fn flight_info(schema: &Schema, ticket: Vec<u8>, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// Streams a query's batches as Flight data, with the schema first (also for no rows), under
/// the caller's `limits`. With `report` (the gateway's audit asked), the statement's access
/// report goes in the response metadata and the rows sent in a trailer
/// ([`result_trailers`]). A result cut at a cap says so in the last message's
/// `app_metadata` (`{"truncated":"max_result_rows"}`) and in a trailer.
async fn stream_frame(
    engine: &QueryEngine,
    frame: DataFrame,
    report: bool,
    limits: Option<&StatementLimits>,
) -> Result<Response<DataStream>, Status> {
    let (stream, access, truncation) = engine.execute(frame, report, limits).await?;
    let schema = stream.schema();
    let trailers = result_trailers::ResultTrailers {
        rows: report.then(|| Arc::new(std::sync::atomic::AtomicU64::new(0))),
        truncation: truncation.clone(),
    };
    let counter = trailers.rows.clone();
    let batches = stream
        .inspect_ok(move |batch| {
            if let Some(counter) = &counter {
                counter.fetch_add(batch.num_rows() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        })
        // An error while the rows stream (a division by zero) is answered as over HTTP: its
        // code from the error table (INVALID_ARGUMENT here), not INTERNAL.
        .map_err(|error| {
            tracing::warn!(%error, "query failed while streaming its result");
            FlightError::Tonic(Box::new(EngineError::from(error).grpc_status()))
        });
    let flight = FlightDataEncoderBuilder::new().with_schema(schema).build(batches).map_err(Status::from);
    let capped = limits.is_some_and(StatementLimits::caps_result);
    let mut response: Response<DataStream> = if capped {
        Response::new(Box::pin(flag_truncation(flight, truncation)))
    } else {
        Response::new(Box::pin(flight))
    };
    if report && let Some(value) = access.and_then(|a| a.parse().ok()) {
        response.metadata_mut().insert(identity::ACCESS_HEADER, value);
    }
    if report || capped {
        response.extensions_mut().insert(trailers);
    }
    Ok(response)
}

/// `messages` with the last one held until the stream ends, then given `app_metadata` naming
/// the cap when the result was cut at one.
fn flag_truncation(
    messages: impl futures::Stream<Item = Result<FlightData, Status>> + Send + 'static,
    truncation: crate::result_cap::Truncation,
) -> impl futures::Stream<Item = Result<FlightData, Status>> + Send + 'static {
    let ended = futures::stream::once(async { None });
    messages
        .map(Some)
        .chain(ended)
        .scan(None::<FlightData>, move |held, item| {
            let out: Vec<Result<FlightData, Status>> = match item {
                Some(Ok(message)) => held.replace(message).map(Ok).into_iter().collect(),
                // An error ends the stream: what was held goes first, then the error.
                Some(Err(error)) => held.take().map(Ok).into_iter().chain([Err(error)]).collect(),
                None => held
                    .take()
                    .map(|mut last| {
                        if let Some(cap) = truncation.cap() {
                            last.app_metadata = bytes::Bytes::from(format!("{{\"truncated\":\"{cap}\"}}"));
                        }
                        Ok(last)
                    })
                    .into_iter()
                    .collect(),
            };
            futures::future::ready(Some(futures::stream::iter(out)))
        })
        .flatten()
}

/// Whether the gateway asked for the access report (see [`identity::REPORT_HEADER`]).
fn wants_report<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(identity::REPORT_HEADER)
}

fn stream_batch(batch: RecordBatch) -> Response<DataStream> {
    let schema = batch.schema();
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Response::new(Box::pin(flight))
}

impl FlightSqlEngine {
    async fn plan(
        &self,
        principal: Arc<Principal>,
        planned: &Planned,
        params: Option<Vec<ScalarValue>>,
        limits: Option<Arc<StatementLimits>>,
    ) -> Result<DataFrame, Status> {
        let Planned { sql, listing, scope, data } = planned.clone();
        let caller = Caller { principal, listing, scope, policy: PolicyFingerprint::default(), data, limits };
        let frame = self.engine.plan(&caller, &sql).await?;
        match params {
            Some(values) => Ok(frame.with_param_values(values).map_err(EngineError::from)?),
            None => Ok(frame),
        }
    }

    fn table_types(&self) -> [&'static str; 3] {
        ["BASE TABLE", "VIEW", "LOCAL TEMPORARY"]
    }
}

fn table_type_name(kind: TableType) -> &'static str {
    match kind {
        TableType::Base => "BASE TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    }
}

/// The parameter schema of a plan: one nullable field per placeholder, `$1`, `$2`, ...
fn parameter_schema(frame: &DataFrame) -> Result<Schema, Status> {
    let types = frame.logical_plan().get_parameter_types().map_err(EngineError::from)?;
    let mut names: Vec<&String> = types.keys().collect();
    names.sort_by_key(|name| name.trim_start_matches('$').parse::<u32>().unwrap_or(u32::MAX));
    let fields: Vec<Field> = names
        .into_iter()
        .map(|name| Field::new(name, types.get(name).cloned().flatten().unwrap_or(DataType::Null), true))
        .collect();
    Ok(Schema::new(fields))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlEngine {
    type FlightService = FlightSqlEngine;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = caller(&request)?;
        let planned = planned(&request, &query.query);
        let frame = self.plan(Arc::clone(&caller), &planned, None, limits(&request)).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let handle = self.tickets.seal(&caller, &policy(&request), &planned);
        let ticket = TicketStatementQuery { statement_handle: handle }.as_any().encode_to_vec();
        flight_info(&schema, ticket, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let caller = caller(&request)?;
        let planned = self.tickets.open(&ticket.statement_handle, &caller, &policy(&request))?;
        let report = wants_report(&request);
        let limits = limits(&request);
        let frame = self.plan(caller, &planned, None, limits.clone()).await?;
        stream_frame(&self.engine, frame, report, limits.as_deref()).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = caller(&request)?;
        let planned = planned(&request, &query.query);
        let frame = self.plan(Arc::clone(&caller), &planned, None, limits(&request)).await?;
        let parameters = parameter_schema(&frame)?;
        // A query with placeholders has no final schema until values are bound.
        let dataset_schema =
            if parameters.fields().is_empty() { ipc_schema(frame.schema().as_arrow())? } else { bytes::Bytes::new() };
        let handle = self.handles.create(caller, policy(&request), planned)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle,
            dataset_schema,
            parameter_schema: ipc_schema(&parameters)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let caller = caller(&request)?;
        let policy = policy(&request);
        let mut batches =
            FlightRecordBatchStream::new_from_flight_data(request.into_inner().map_err(FlightError::from));
        let mut params = None;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(Status::from)?;
            if batch.num_rows() == 0 {
                continue;
            }
            if params.is_some() || batch.num_rows() > 1 {
                return Err(EngineError::BadRequest("bind exactly one row of parameters".into()).into());
            }
            let values = (0..batch.num_columns())
                .map(|i| ScalarValue::try_from_array(batch.column(i), 0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(EngineError::from)?;
            params = Some(values);
        }
        let params = params.ok_or_else(|| EngineError::BadRequest("no parameter row was sent".into()))?;
        self.handles.bind(&query.prepared_statement_handle, &caller, &policy, params)?;
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(query.prepared_statement_handle) })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = caller(&request)?;
        let statement = self.handles.get(&query.prepared_statement_handle, &caller, &policy(&request))?;
        let frame = self.plan(caller, &statement.planned, statement.params, limits(&request)).await?;
        let schema = frame.schema().as_arrow().clone();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let caller = caller(&request)?;
        let statement = self.handles.get(&query.prepared_statement_handle, &caller, &policy(&request))?;
        let report = wants_report(&request);
        let limits = limits(&request);
        let frame = self.plan(caller, &statement.planned, statement.params, limits.clone()).await?;
        stream_frame(&self.engine, frame, report, limits.as_deref()).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let caller = caller(&request)?;
        Ok(self.handles.close(&query.prepared_statement_handle, &caller)?)
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let mut builder = query.into_builder();
        let mut catalogs: Vec<String> =
            self.engine.listed_schemas(&listing(&request)).await?.into_iter().map(|(c, _)| c).collect();
        catalogs.dedup();
        for catalog in catalogs {
            builder.append(catalog);
        }
        Ok(stream_batch(builder.build().map_err(Status::from)?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let mut builder = query.into_builder();
        for (catalog, schema) in self.engine.listed_schemas(&listing(&request)).await? {
            builder.append(catalog, schema);
        }
        Ok(stream_batch(builder.build().map_err(Status::from)?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let mut builder = query.into_builder();
        for table in self.engine.listed_tables(&listing(&request), &decided(&request)).await? {
            builder
                .append(&table.catalog, &table.schema, &table.name, table_type_name(table.kind), &table.arrow_schema)
                .map_err(Status::from)?;
        }
        Ok(stream_batch(builder.build().map_err(Status::from)?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let mut builder = query.into_builder();
        for kind in self.table_types() {
            builder.append(kind);
        }
        Ok(stream_batch(builder.build().map_err(Status::from)?))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        Ok(stream_batch(query.into_builder(&self.sql_info).build().map_err(Status::from)?))
    }

    async fn do_get_fallback(&self, _request: Request<Ticket>, message: Any) -> Result<Response<DataStream>, Status> {
        Err(Status::invalid_argument(format!("unsupported Flight SQL ticket: {}", message.type_url)))
    }

    async fn do_action_fallback(
        &self,
        request: Request<arrow_flight::Action>,
    ) -> Result<Response<<Self as arrow_flight::flight_service_server::FlightService>::DoActionStream>, Status> {
        let action = request.into_inner();
        let body = crate::flight::session::answer(&action.r#type, &action.body)
            .ok_or_else(|| Status::invalid_argument(format!("unsupported Flight action: {}", action.r#type)))??;
        let result = arrow_flight::Result { body: body.into() };
        Ok(Response::new(Box::pin(futures::stream::once(async move { Ok(result) }))))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
