//! JSON parsing that refuses duplicate object keys.
//!
//! `serde_json::Value` keeps the last of two equal keys, so `{"id":"a","id":"b"}` would be
//! read as `{"id":"b"}` while a proxy, a log or another parser in front of the coordinator may
//! have read `"a"`. A client body that can mean two things is refused instead: this parser
//! builds the same `Value` in one pass and fails on the first repeated key, with serde_json's
//! line and column in the message.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// A JSON value whose objects had no repeated keys.
pub struct StrictValue(pub Value);

/// Why a body is not strict JSON.
#[derive(Debug, thiserror::Error)]
pub enum StrictJsonError {
    /// Well-formed JSON, but some object repeats a key.
    #[error(transparent)]
    DuplicateKey(serde_json::Error),
    /// Not JSON at all (syntax, truncated input).
    #[error(transparent)]
    Malformed(serde_json::Error),
}

/// Parses `bytes` as JSON, refusing duplicate keys in any object at any depth.
pub fn from_slice(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    serde_json::from_slice::<StrictValue>(bytes)
        .map(|v| v.0)
        .map_err(|e| {
            // The visitor accepts every JSON type, so the only data error it raises (as
            // opposed to serde_json's syntax and end-of-input errors) is a repeated key:
            // non-finite numbers never reach it.
            if e.classify() == serde_json::error::Category::Data {
                StrictJsonError::DuplicateKey(e)
            } else {
                StrictJsonError::Malformed(e)
            }
        })
}

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // serde_json only produces finite floats (1e999 is already a parse error).
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(d).map(|v| v.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(StrictValue(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if m.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key {key:?} in a JSON object (a repeated key is ambiguous; send it once)"
                )));
            }
            let StrictValue(value) = map.next_value()?;
            m.insert(key, value);
        }
        Ok(Value::Object(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_as_serde_json_without_duplicates() {
        let text = br#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":18446744073709551615}"#;
        let strict = from_slice(text).unwrap();
        let plain: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(strict, plain);
    }

    #[test]
    fn duplicate_keys_fail_at_any_depth_with_a_position() {
        for text in [
            r#"{"id":"a","id":"b"}"#,
            r#"{"participants":{"x":{"redis":[]},"x":{"redis":[]}}}"#,
            r#"[{"k":1,"k":1}]"#,
        ] {
            let e = from_slice(text.as_bytes()).unwrap_err();
            assert!(matches!(e, StrictJsonError::DuplicateKey(_)), "{text}: {e}");
            assert!(e.to_string().contains("duplicate key"), "{text}: {e}");
            assert!(e.to_string().contains("column"), "{text}: {e}");
        }
        for text in ["{not json", "", "[1,", "\"a\" x"] {
            let e = from_slice(text.as_bytes()).unwrap_err();
            assert!(matches!(e, StrictJsonError::Malformed(_)), "{text}: {e}");
        }
        // Equal keys in different objects are fine.
        from_slice(br#"{"a":{"k":1},"b":{"k":1}}"#).unwrap();
    }
}
