//! `sql`: a SQLite database per object, over HTTP and binary RPC.
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /sql/{db}/query` `{"sql": "...", "params": [...]}` | `{"columns", "rows", "rows_read", "rows_written", "database_size"}` once durable |
//! | `POST /sql/{db}/batch` `{"statements": [{"sql", "params"}, ...]}` | `{"results": [...], "database_size"}`: all or nothing |
//! | `GET /sql/{db}` | `{"database_size", "tables": [...]}` |
//! | `DELETE /sql/{db}` | `{"deleted": true}` |
//!
//! Values are JSON null, integers (i64), floats and strings; a blob is
//! `{"base64": "..."}` both ways (`true`/`false` bind as 1/0). Errors: an
//! SQL error or a refused statement `400 {"error", "code"}` (a batch adds
//! `"index"`, the failing statement's, and applies nothing); a limit `413
//! {"error", "limit", "max"}`; a statement past its time budget `408`;
//! malformed JSON `400`. The RPC methods (`query`, `batch`, `info`,
//! `delete_all`) take and return the same JSON.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};

use crate::config::{reject_unknown, ConfigError};
use crate::object::{
    Context, DurableObject, ObjectClass, Request, Response, RpcError, TransactionError,
};
use crate::sql::{SqlError, SqlRows, SqlValue};
use crate::ObjectId;
use durin_proto::rpc::builtin;

/// Most statements in one batch.
pub const BATCH_STATEMENTS_MAX: usize = 1000;

/// The sql class.
pub struct SqlClass;

impl SqlClass {
    /// Builds the class from its config table (its SQL limits are the
    /// common `sql_*` settings).
    pub fn from_config(table: &mut toml::Table) -> Result<SqlClass, ConfigError> {
        reject_unknown(table, "sql")?;
        Ok(SqlClass)
    }
}

impl ObjectClass for SqlClass {
    fn create(&self, _id: &ObjectId, _ctx: &mut Context<'_>) -> Box<dyn DurableObject> {
        Box::new(SqlObject)
    }
}

struct SqlObject;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Statement {
    sql: String,
    #[serde(default)]
    params: Vec<Json>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    statements: Vec<Statement>,
}

/// A failed operation: the HTTP status and the JSON body.
struct Failure {
    status: u16,
    body: Json,
    error: Option<SqlError>,
}

fn bad_request(message: String) -> Failure {
    Failure {
        status: 400,
        body: json!({ "error": message }),
        error: None,
    }
}

fn sql_failure(e: SqlError, index: Option<usize>) -> Failure {
    let (status, mut body) = match &e {
        SqlError::Sql { code, message } => (400, json!({ "error": message, "code": code })),
        SqlError::Refused { reason } => (
            400,
            json!({ "error": format!("not allowed: {reason}"), "code": "SQLITE_AUTH" }),
        ),
        SqlError::Limit { limit, max, .. } => (
            413,
            json!({ "error": e.to_string(), "limit": limit, "max": max }),
        ),
        SqlError::Interrupted { .. } => (
            408,
            json!({ "error": e.to_string(), "code": "SQLITE_INTERRUPT" }),
        ),
        _ => (500, json!({ "error": e.to_string() })),
    };
    if let (Some(i), Some(map)) = (index, body.as_object_mut()) {
        map.insert("index".into(), json!(i));
    }
    Failure {
        status,
        body,
        error: Some(e),
    }
}

fn value_from_json(v: &Json) -> Result<SqlValue, String> {
    Ok(match v {
        Json::Null => SqlValue::Null,
        Json::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => SqlValue::Integer(i),
            (None, Some(f)) if n.is_f64() => SqlValue::Real(f),
            _ => return Err(format!("the number {n} does not fit a 64-bit integer")),
        },
        Json::String(s) => SqlValue::Text(s.clone()),
        Json::Object(map) => match (map.len(), map.get("base64")) {
            (1, Some(Json::String(b64))) => SqlValue::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("invalid base64 in a blob parameter: {e}"))?,
            ),
            _ => return Err("an object parameter must be {\"base64\": \"...\"}".into()),
        },
        Json::Array(_) => return Err("a parameter cannot be an array".into()),
    })
}

fn value_to_json(v: &SqlValue) -> Json {
    match v {
        SqlValue::Null => Json::Null,
        SqlValue::Integer(i) => json!(i),
        // JSON has no NaN or infinity; SQLite stores NaN as NULL anyway.
        SqlValue::Real(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        SqlValue::Text(t) => Json::String(t.clone()),
        SqlValue::Blob(b) => {
            json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
        }
    }
}

fn rows_to_json(rows: &SqlRows) -> Map<String, Json> {
    let mut map = Map::new();
    map.insert("columns".into(), json!(rows.column_names));
    let values: Vec<Json> = rows
        .rows
        .iter()
        .map(|r| Json::Array(r.iter().map(value_to_json).collect()))
        .collect();
    map.insert("rows".into(), Json::Array(values));
    map.insert("rows_read".into(), json!(rows.rows_read));
    map.insert("rows_written".into(), json!(rows.rows_written));
    map
}

fn run_statement(ctx: &mut Context<'_>, statement: &Statement) -> Result<SqlRows, Failure> {
    let params = statement
        .params
        .iter()
        .map(value_from_json)
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad_request)?;
    ctx.sql()
        .exec(&statement.sql, &params)
        .map_err(|e| sql_failure(e, None))
}

fn with_size(ctx: &mut Context<'_>, mut map: Map<String, Json>) -> Result<Json, Failure> {
    let size = ctx
        .sql()
        .database_size()
        .map_err(|e| sql_failure(e, None))?;
    map.insert("database_size".into(), json!(size));
    Ok(Json::Object(map))
}

fn query(body: &[u8], ctx: &mut Context<'_>) -> Result<Json, Failure> {
    let statement: Statement = serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("the body must be {{\"sql\", \"params\"}}: {e}")))?;
    let rows = run_statement(ctx, &statement)?;
    with_size(ctx, rows_to_json(&rows))
}

fn batch(body: &[u8], ctx: &mut Context<'_>) -> Result<Json, Failure> {
    let batch: Batch = serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("the body must be {{\"statements\": [...]}}: {e}")))?;
    if batch.statements.len() > BATCH_STATEMENTS_MAX {
        return Err(Failure {
            status: 413,
            body: json!({
                "error": format!("{} statements in one batch", batch.statements.len()),
                "limit": "batch_statements_max",
                "max": BATCH_STATEMENTS_MAX,
            }),
            error: None,
        });
    }
    let results = ctx.transaction_sync(|ctx| {
        let mut results = Vec::with_capacity(batch.statements.len());
        for (i, statement) in batch.statements.iter().enumerate() {
            let rows = run_statement(ctx, statement).map_err(|mut f| {
                if let Some(map) = f.body.as_object_mut() {
                    map.insert("index".into(), json!(i));
                }
                f
            })?;
            results.push(Json::Object(rows_to_json(&rows)));
        }
        Ok(results)
    });
    let results = results.map_err(|TransactionError::Aborted(f)| f)?;
    let mut map = Map::new();
    map.insert("results".into(), Json::Array(results));
    with_size(ctx, map)
}

fn info(ctx: &mut Context<'_>) -> Result<Json, Failure> {
    let tables = ctx
        .sql()
        .exec(
            "SELECT name FROM sqlite_schema WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
            &[],
        )
        .map_err(|e| sql_failure(e, None))?;
    let names: Vec<Json> = tables
        .rows
        .iter()
        .filter_map(|r| r.first().map(value_to_json))
        .collect();
    let mut map = Map::new();
    map.insert("tables".into(), Json::Array(names));
    with_size(ctx, map)
}

fn delete_all(ctx: &mut Context<'_>) -> Result<Json, Failure> {
    ctx.storage().delete_all().map_err(|e| Failure {
        status: 500,
        body: json!({ "error": e.to_string() }),
        error: None,
    })?;
    Ok(json!({ "deleted": true }))
}

fn respond(res: &mut Response, result: Result<Json, Failure>) {
    let (status, body) = match result {
        Ok(body) => (200, body),
        Err(f) => (f.status, f.body),
    };
    res.json(status);
    // Serializing a `serde_json::Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(res.body_mut(), &body);
}

impl DurableObject for SqlObject {
    fn fetch(&mut self, req: &Request<'_>, res: &mut Response, ctx: &mut Context<'_>) {
        let result = match (req.method, req.path) {
            ("POST", "/query") => query(req.body, ctx),
            ("POST", "/batch") => batch(req.body, ctx),
            ("GET", "") => info(ctx),
            ("DELETE", "") => delete_all(ctx),
            _ => Err(Failure {
                status: 404,
                body: json!({ "error": "not found: use POST /query, POST /batch, GET or DELETE" }),
                error: None,
            }),
        };
        respond(res, result);
    }

    /// The same operations over binary RPC, with the same JSON; a failure
    /// is an RPC error whose message is the JSON error body.
    fn rpc(
        &mut self,
        method: &str,
        payload: &[u8],
        out: &mut Vec<u8>,
        ctx: &mut Context<'_>,
    ) -> Result<(), RpcError> {
        let result = match method {
            builtin::SQL_QUERY => query(payload, ctx),
            builtin::SQL_BATCH => batch(payload, ctx),
            builtin::SQL_INFO => info(ctx),
            builtin::SQL_DELETE_ALL => delete_all(ctx),
            _ => return Err(RpcError::UnknownMethod),
        };
        match result {
            Ok(body) => {
                // Serializing a `serde_json::Value` into a Vec cannot fail.
                let _ = serde_json::to_writer(out, &body);
                Ok(())
            }
            Err(f) => Err(match f.error {
                Some(SqlError::Sql { code, .. }) => RpcError::Sql(SqlError::Sql {
                    code,
                    message: f.body.to_string(),
                }),
                Some(e @ (SqlError::Limit { .. } | SqlError::Interrupted { .. })) => {
                    RpcError::Sql(e)
                }
                _ => RpcError::BadArgument(f.body.to_string()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_map_to_sql_values_and_back() {
        let blob = json!({ "base64": "AAEC" });
        assert_eq!(
            value_from_json(&blob).expect("blob"),
            SqlValue::Blob(vec![0, 1, 2])
        );
        assert_eq!(value_to_json(&SqlValue::Blob(vec![0, 1, 2])), blob);
        assert_eq!(
            value_from_json(&json!(1.5)).expect("float"),
            SqlValue::Real(1.5)
        );
        assert_eq!(
            value_from_json(&json!(-7)).expect("int"),
            SqlValue::Integer(-7)
        );
        assert!(value_from_json(&json!(u64::MAX)).is_err());
        assert!(value_from_json(&json!([1])).is_err());
        assert!(value_from_json(&json!({ "x": 1 })).is_err());
        assert_eq!(value_to_json(&SqlValue::Real(f64::NAN)), Json::Null);
    }
}
