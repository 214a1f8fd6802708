//! A fast, early refusal of statements whose first keyword is transaction control. What a
//! client statement may do is decided inside PostgreSQL (the extension's trust boundary);
//! this only spares the obvious cases a round trip.

/// The first keyword of a statement, skipping whitespace and comments the way PostgreSQL's
/// lexer does (block comments nest; a line comment ends at `\n` or `\r`), upper-cased.
/// Only a fast early error rests on this: what a statement may do is enforced inside
/// PostgreSQL.
fn first_keyword(sql: &str) -> String {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.find(['\n', '\r']).map_or("", |i| &r[i + 1..]);
        } else if rest.starts_with("/*") {
            rest = skip_block_comment(rest);
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// What follows the (nested) block comment `s` starts with; "" when it never ends.
fn skip_block_comment(s: &str) -> &str {
    let b = s.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return &s[i..];
                }
            }
            _ => i += 1,
        }
    }
    ""
}

/// Why a statement may not run inside a participant transaction, if it may not.
pub fn refuse_statement(sql: &str) -> Option<String> {
    let kw = first_keyword(sql);
    const CONTROL: &[&str] = &[
        "BEGIN",
        "START",
        "COMMIT",
        "END",
        "ROLLBACK",
        "ABORT",
        "SAVEPOINT",
        "RELEASE",
        "PREPARE",
        "VACUUM",
    ];
    if kw.is_empty() {
        return Some("empty statement".into());
    }
    if CONTROL.contains(&kw.as_str()) {
        return Some(format!(
            "{kw} is not allowed in a participant transaction: the coordinator decides how it ends"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_control_is_refused() {
        for s in [
            "COMMIT",
            "  commit;",
            "-- c\nROLLBACK",
            "/* x */ savepoint a",
            "/* /* */ SELECT */ COMMIT",
            "-- x\rROLLBACK /*\nSELECT */",
            "-- x\rSAVEPOINT s /*\nSELECT */",
            "prepare transaction 'x'",
            "BEGIN",
            "end",
            "",
        ] {
            assert!(refuse_statement(s).is_some(), "{s:?}");
        }
        for s in [
            "UPDATE t SET a = 1",
            "select 1",
            "insert into x values (1)",
            "WITH a AS (SELECT 1) SELECT * FROM a",
        ] {
            assert_eq!(refuse_statement(s), None, "{s:?}");
        }
    }
}
