//! A client's statements, run behind the trust boundary ([`crate::boundary`]).
//!
//! `twopc.run_and_prepare()` receives the statements of one participant transaction as three
//! arrays (query texts, parameter counts, and all parameters in text form, NULL for SQL NULL)
//! and runs them here, one after the other, through SPI, in client mode. Nothing of them is
//! ever spliced into SQL: each query is parsed on its own and its parameters are bound to it.
//!
//! # Parameters
//!
//! As in PostgreSQL's extended protocol, the parameter types are inferred from the query
//! (`setup_parse_variable_parameters`, what `Parse` with unspecified types does) and each text
//! value is converted by its type's input function, so `{"query": "... WHERE id = $1",
//! "params": [1]}` means the same here as through a driver. A count that does not match the
//! query's placeholders, and a placeholder whose type cannot be inferred, are errors.
//!
//! # One command per statement
//!
//! Each query must be exactly one SQL command: a string with several (`UPDATE ...; UPDATE ...`)
//! is refused, as the extended protocol refuses it, so one statement of the client's is one
//! thing that can fail, and the error says which.
//!
//! # Plans
//!
//! A query's plan is kept per backend (keyed by its text; parameter types are those inferred
//! the first time) and revalidated by PostgreSQL's plan cache when the objects it uses change,
//! so a pooled participant connection parses a transfer's statements once, not per
//! transaction. The first use parses twice: once to infer the parameter types, once to build
//! the plan kept with those types (a plan kept with inference hooks would re-run them later
//! against memory that is gone).

use crate::boundary::ClientMode;
use crate::error::{Result, TwopcError};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_int, c_void, CString};

unsafe extern "C-unwind" {
    /// parser/parse_param.h (not in the pgrx bindings): parameter references of unspecified
    /// type get their type from context, as in the extended protocol's Parse.
    fn setup_parse_variable_parameters(
        pstate: *mut pg_sys::ParseState,
        param_types: *mut *mut pg_sys::Oid,
        num_params: *mut c_int,
    );
}

/// Most plans kept per backend before all are dropped.
const PLAN_CACHE: usize = 256;

/// The statement that fires the client's deferred constraint triggers while still in client
/// mode (see [`crate::boundary`]).
const FIRE_DEFERRED: &str = "SET CONSTRAINTS ALL IMMEDIATE";

/// A kept plan and the parameter types it was built with.
struct Kept {
    plan: pg_sys::SPIPlanPtr,
    types: Vec<pg_sys::Oid>,
}

thread_local! {
    static PLANS: RefCell<HashMap<String, Kept>> = RefCell::new(HashMap::new());
}

/// One client statement: its query text and its parameters in text form.
pub struct Statement<'a> {
    /// The SQL.
    pub query: &'a str,
    /// Text form of each parameter, `None` for NULL.
    pub params: &'a [Option<String>],
}

/// Splits the three SQL arrays into statements, checking that they agree.
pub fn statements<'a>(
    queries: &'a [Option<String>],
    counts: &'a [Option<i32>],
    params: &'a [Option<String>],
) -> Result<Vec<Statement<'a>>> {
    if queries.len() != counts.len() {
        return Err(TwopcError::BadStatementList {
            detail: format!(
                "{} queries but {} parameter counts",
                queries.len(),
                counts.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(queries.len());
    let mut at = 0usize;
    for (i, (q, n)) in queries.iter().zip(counts).enumerate() {
        let Some(q) = q.as_deref() else {
            return Err(TwopcError::BadStatementList {
                detail: format!("query {} is NULL", i + 1),
            });
        };
        let n = n.and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
            TwopcError::BadStatementList {
                detail: format!("parameter count of query {} is not a count", i + 1),
            }
        })?;
        let end = at
            .checked_add(n)
            .filter(|&e| e <= params.len())
            .ok_or_else(|| TwopcError::BadStatementList {
                detail: format!(
                    "parameter counts add up to more than the {} given",
                    params.len()
                ),
            })?;
        out.push(Statement {
            query: q,
            params: &params[at..end],
        });
        at = end;
    }
    if at != params.len() {
        return Err(TwopcError::BadStatementList {
            detail: format!(
                "{} parameters given but the counts add up to {at}",
                params.len()
            ),
        });
    }
    Ok(out)
}

/// Runs `stmts` as `role` in client mode, then fires deferred constraint triggers, then leaves
/// client mode (see [`crate::boundary`]). Any failure is an `ERROR` naming the statement.
pub fn run(role: pg_sys::Oid, stmts: &[Statement<'_>]) -> Result<()> {
    // SAFETY: SPI is connected for the duration of this call on the main thread; an ERROR
    // unwinds through here and the transaction's abort disconnects it.
    unsafe {
        if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as c_int {
            return Err(TwopcError::Spi {
                detail: "SPI_connect failed".into(),
            });
        }
    }
    let mode = ClientMode::enter(role);
    for (i, s) in stmts.iter().enumerate() {
        let n = i + 1;
        PgTryBuilder::new(|| execute(s.query, s.params).unwrap_or_else(|e| e.raise()))
            .catch_others(move |caught| match caught {
                pg_sys::panic::CaughtError::PostgresError(report)
                | pg_sys::panic::CaughtError::ErrorReport(report) => {
                    let mut r = pg_sys::panic::ErrorReport::new(
                        report.sql_error_code(),
                        format!("statement {n} failed: {}", report.message()),
                        "pg_twopc_ext",
                    );
                    if let Some(d) = report.detail() {
                        r = r.set_detail(d);
                    }
                    if let Some(h) = report.hint() {
                        r = r.set_hint(h);
                    }
                    r.report(PgLogLevel::ERROR);
                    unreachable!("ereport(ERROR) returned")
                }
                other => other.rethrow(),
            })
            .execute();
    }
    execute(FIRE_DEFERRED, &[])?;
    mode.leave()?;
    // SAFETY: pairs with SPI_connect above.
    unsafe { pg_sys::SPI_finish() };
    Ok(())
}

/// Parses (or finds the kept plan of) one query and executes it with its parameters.
fn execute(query: &str, params: &[Option<String>]) -> Result<()> {
    let (plan, types) = plan_for(query, params.len())?;
    // SAFETY: the param list is allocated in the current memory context and filled for exactly
    // `types.len()` parameters, each converted by its type's input function (NULL included,
    // for domains that refuse it, as exec_bind_message does).
    unsafe {
        let list = pg_sys::makeParamList(types.len() as c_int);
        let slots = (*list).params.as_mut_slice(types.len());
        for (slot, (ty, value)) in slots.iter_mut().zip(types.iter().zip(params)) {
            let mut input = pg_sys::InvalidOid;
            let mut ioparam = pg_sys::InvalidOid;
            pg_sys::getTypeInputInfo(*ty, &mut input, &mut ioparam);
            let text = value
                .as_deref()
                .map(CString::new)
                .transpose()
                .map_err(|_| TwopcError::BadStatementList {
                    detail: "a parameter contains a NUL byte".into(),
                })?;
            let ptr = text
                .as_ref()
                .map_or(std::ptr::null_mut(), |c| c.as_ptr() as *mut _);
            slot.value = pg_sys::OidInputFunctionCall(input, ptr, ioparam, -1);
            slot.isnull = value.is_none();
            slot.pflags = pg_sys::PARAM_FLAG_CONST as u16;
            slot.ptype = *ty;
        }
        let rc = pg_sys::SPI_execute_plan_with_paramlist(plan, list, false, 0);
        spi_result(rc)
    }
}

/// Turns the refusals SPI returns instead of raising into errors.
fn spi_result(rc: c_int) -> Result<()> {
    if rc >= 0 {
        return Ok(());
    }
    Err(match rc {
        pg_sys::SPI_ERROR_TRANSACTION => TwopcError::ClientTransactionControl,
        pg_sys::SPI_ERROR_COPY => TwopcError::ClientStatement {
            what: "COPY to or from the client".into(),
        },
        other => TwopcError::Spi {
            detail: format!("SPI_execute_plan returned {other}"),
        },
    })
}

/// The kept plan for `query` with `given` parameters, prepared and kept on first use.
fn plan_for(query: &str, given: usize) -> Result<(pg_sys::SPIPlanPtr, Vec<pg_sys::Oid>)> {
    if let Some(found) = PLANS.with(|p| p.borrow().get(query).map(|k| (k.plan, k.types.clone()))) {
        check_count(given, found.1.len())?;
        return Ok(found);
    }
    let cquery = CString::new(query).map_err(|_| TwopcError::BadStatementList {
        detail: "a query contains a NUL byte".into(),
    })?;
    let types = infer_types(&cquery)?;
    check_count(given, types.len())?;
    // SAFETY: SPI is connected (see `run`); the kept plan lives in its own memory context
    // until SPI_freeplan.
    let plan = unsafe {
        let mut argtypes = types.clone();
        let plan = pg_sys::SPI_prepare(
            cquery.as_ptr(),
            argtypes.len() as c_int,
            argtypes.as_mut_ptr(),
        );
        if plan.is_null() {
            let code = pg_sys::SPI_result;
            return Err(TwopcError::Spi {
                detail: format!("SPI_prepare failed ({code})"),
            });
        }
        pg_sys::SPI_keepplan(plan);
        plan
    };
    PLANS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() >= PLAN_CACHE {
            for (_, k) in p.drain() {
                // SAFETY: a plan kept by us and no longer referenced.
                unsafe { pg_sys::SPI_freeplan(k.plan) };
            }
        }
        p.insert(
            query.to_owned(),
            Kept {
                plan,
                types: types.clone(),
            },
        );
    });
    Ok((plan, types))
}

fn check_count(given: usize, required: usize) -> Result<()> {
    if given != required {
        return Err(TwopcError::ParameterCount { given, required });
    }
    Ok(())
}

/// Storage the variable-parameter parser hook writes the inferred types into.
struct Inferred {
    types: *mut pg_sys::Oid,
    count: c_int,
}

#[pg_guard]
unsafe extern "C-unwind" fn setup_inference(pstate: *mut pg_sys::ParseState, arg: *mut c_void) {
    // SAFETY: `arg` is the `Inferred` that `infer_types` passes, alive for the whole prepare.
    unsafe {
        let inferred = arg as *mut Inferred;
        setup_parse_variable_parameters(pstate, &mut (*inferred).types, &mut (*inferred).count);
    }
}

/// Parses `query` once to learn how many parameters it has and their types, and that it is
/// exactly one command.
fn infer_types(query: &CString) -> Result<Vec<pg_sys::Oid>> {
    let mut inferred = Inferred {
        types: std::ptr::null_mut(),
        count: 0,
    };
    // SAFETY: SPI is connected; the plan and the inferred types are allocated in SPI's
    // procedure memory, read here and released with it.
    unsafe {
        let options = pg_sys::SPIPrepareOptions {
            parserSetup: Some(setup_inference),
            parserSetupArg: &mut inferred as *mut Inferred as *mut c_void,
            parseMode: pg_sys::RawParseMode::RAW_PARSE_DEFAULT,
            cursorOptions: 0,
        };
        let plan = pg_sys::SPI_prepare_extended(query.as_ptr(), &options);
        if plan.is_null() {
            let code = pg_sys::SPI_result;
            return Err(TwopcError::Spi {
                detail: format!("SPI_prepare failed ({code})"),
            });
        }
        let sources = pg_sys::SPI_plan_get_plan_sources(plan);
        let commands = if sources.is_null() {
            0
        } else {
            (*sources).length
        };
        let mut types = Vec::with_capacity(inferred.count.max(0) as usize);
        for i in 0..inferred.count.max(0) as usize {
            let ty = *inferred.types.add(i);
            if ty == pg_sys::InvalidOid || ty == pg_sys::UNKNOWNOID {
                pg_sys::SPI_freeplan(plan);
                return Err(TwopcError::ParameterType { index: i + 1 });
            }
            types.push(ty);
        }
        pg_sys::SPI_freeplan(plan);
        if commands != 1 {
            return Err(TwopcError::NotOneCommand { commands });
        }
        Ok(types)
    }
}
