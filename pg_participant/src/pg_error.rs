//! Postgres's errors, the way a vote or an error reply reports them.

use twopc_protocol::NoClass;

/// Why a NO: Postgres's error, with the number of the client statement that failed first
/// (the extension's message starts with "statement N failed: ").
pub(crate) fn reason(e: &tokio_postgres::Error) -> String {
    let described = describe(e);
    let Some(db) = e.as_db_error() else {
        return described;
    };
    match db.message().split_once(": ") {
        Some((head, rest)) if head.starts_with("statement ") && head.ends_with(" failed") => {
            let mut s = format!("{head}: {} {}: {rest}", db.severity(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            s
        }
        _ => format!("prepare failed: {described}"),
    }
}

/// Postgres's error, the way a NO vote reports it: severity, SQLSTATE, message and detail.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            s
        }
        None => e.to_string(),
    }
}

/// What kind of NO Postgres's error makes: another attempt can succeed after a serialization
/// failure (40001), a deadlock (40P01) or a lock wait past `lock_timeout` (55P03); anything
/// else (a constraint, an SQL or type error, a permission) fails the same way again.
pub(crate) fn class(e: &tokio_postgres::Error) -> NoClass {
    match e.code().map(|c| c.code()) {
        Some("40001" | "40P01" | "55P03") => NoClass::Conflict,
        _ => NoClass::Final,
    }
}

/// Whether `e` says the connection itself is gone rather than that a statement failed: closed,
/// an I/O error on its socket, a connection exception (class 08), or the server ending the
/// session (57P01 terminated by an administrator, 57P02 crash of another backend, 57P03 not
/// accepting connections yet). Whatever the session had open is then rolled back (or, for a
/// statement whose answer was lost, settled by the server alone), so work that is idempotent
/// here (a prepare under its gid, a decision, a read) can run again on a new connection.
pub(crate) fn connection_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}
