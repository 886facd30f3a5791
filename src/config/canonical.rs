//! The canonical form of parameter values, so that spellings that mean the same thing give the
//! same cache key: `1.0` and `1` are one number, and mapping keys are sorted (serde_json's map
//! is ordered by key).

use serde_json::{Number, Value};

/// Largest integer an f64 holds exactly.
const EXACT_F64_INT: f64 = 9_007_199_254_740_992.0;

pub fn canonical(value: Value) -> Value {
    match value {
        Value::Number(n) => Value::Number(canonical_number(n)),
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, canonical(v))).collect()),
        other => other,
    }
}

fn canonical_number(n: Number) -> Number {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < EXACT_F64_INT => Number::from(f as i64),
        _ => n,
    }
}

/// How a parameter value is shown to users and passed to shell stages: strings bare,
/// everything else as JSON.
pub fn display_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integral_floats_become_integers() {
        assert_eq!(canonical(json!({"b": 1.0, "a": [2.0, 0.5]})), json!({"a": [2, 0.5], "b": 1}));
    }

    #[test]
    fn key_order_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"x": 1, "y": 2}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"y": 2, "x": 1}"#).unwrap();
        assert_eq!(serde_json::to_string(&canonical(a)).unwrap(), serde_json::to_string(&canonical(b)).unwrap());
    }
}
