//! Embedded demo data: two tenants' customers and orders, served in memory so the quick
//! start needs no files.

use std::io::Cursor;
use std::sync::Arc;

use datafusion::arrow::csv::ReaderBuilder;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::prelude::SessionContext;

use super::register::register_table;

const CUSTOMERS: &str = include_str!("../../demo/customers.csv");
const ORDERS: &str = include_str!("../../demo/orders.csv");

/// Registers `demo.customers` and `demo.orders`.
pub(crate) fn register(ctx: &SessionContext) -> Result<()> {
    let customers = Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("email", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
        Field::new("phone", DataType::Utf8, false),
        Field::new("national_id", DataType::Utf8, false),
    ]);
    let orders = Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("order_date", DataType::Date32, false),
        Field::new("account_manager", DataType::Utf8, false),
    ]);
    let [customers_name, orders_name] = identity::DEMO_TABLES;
    register_table(ctx, customers_name, csv_table(customers, CUSTOMERS)?)?;
    register_table(ctx, orders_name, csv_table(orders, ORDERS)?)?;
    Ok(())
}

fn csv_table(schema: Schema, csv: &'static str) -> Result<Arc<MemTable>> {
    let schema = Arc::new(schema);
    let reader = ReaderBuilder::new(Arc::clone(&schema)).with_header(true).build(Cursor::new(csv))?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}
