//! pg_twopc_ext: the PostgreSQL half of twopc.
//!
//! `CREATE EXTENSION pg_twopc_ext` installs, in schema `twopc`, SQL functions that wrap
//! PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED with in-doubt tracking. The
//! functions themselves arrive with the pg_twopc_ext issue.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

/// The wire protocol version this build of the extension speaks.
#[pg_extern]
fn protocol_version() -> i32 {
    twopc_protocol::PROTOCOL_VERSION as i32
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn reports_protocol_version() {
        let v = Spi::get_one::<i32>("SELECT twopc.protocol_version()").unwrap();
        assert_eq!(v, Some(twopc_protocol::PROTOCOL_VERSION as i32));
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["max_prepared_transactions = 16"]
    }
}
