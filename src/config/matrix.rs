//! A stage's `matrix:`: the axes whose combinations become instances, and `include:` entries that
//! give some combinations extra or different parameters.
//!
//! ```yaml
//! matrix:
//!   arch: [early_fusion_cnn, late_fusion_resnet18]
//!   include:
//!     - {arch: late_fusion_resnet18, epochs: 20}   # only this instance trains longer
//! ```
//!
//! As in GitHub Actions, an entry's keys that name an axis select the combinations it applies to (all
//! of them when it names none); its other keys are parameters for those instances and take precedence
//! over `with:`. Unlike GitHub Actions, an entry that selects nothing is an error rather than a new
//! combination: a typo in a value should not quietly add an instance. Extra keys do not change an
//! instance's name (`train[arch=late_fusion_resnet18]`), only its parameters and so its cache key.

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::canonical::{canonical, display_value};

/// The key under `matrix:` that holds include entries instead of an axis.
pub const INCLUDE: &str = "include";

/// One combination of axis values, in the order the matrix lists its axes.
pub type Combination = Vec<(String, Value)>;

/// A problem with an include entry: which entry, and what.
#[derive(Debug)]
pub struct IncludeError {
    pub index: usize,
    /// The key the problem is about, if one.
    pub key: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

/// Parameters an include entry adds to a combination.
type Params = Map<String, Value>;

/// Every combination of the axis values (one empty combination without axes), each with the extra
/// parameters its include entries give it (later entries win).
pub fn expand(matrix: &IndexMap<String, Vec<Value>>) -> Result<Vec<(Combination, Params)>, IncludeError> {
    let axes: Vec<(&String, &Vec<Value>)> = matrix.iter().filter(|(k, _)| k.as_str() != INCLUDE).collect();
    let mut result: Vec<(Combination, Map<String, Value>)> = combinations(&axes).into_iter().map(|c| (c, Map::new())).collect();
    let includes = matrix.get(INCLUDE).map(Vec::as_slice).unwrap_or(&[]);
    for (index, entry) in includes.iter().enumerate() {
        let Value::Object(entry) = entry else {
            return Err(IncludeError {
                index,
                key: None,
                message: format!("`include` entry {} is not a mapping", index + 1),
                hint: Some("write each entry as `{axis: value, parameter: value}`".into()),
            });
        };
        let (selectors, extras): (Vec<_>, Vec<_>) = entry.iter().partition(|(k, _)| axes.iter().any(|(axis, _)| axis == k));
        if extras.is_empty() {
            return Err(IncludeError {
                index,
                key: None,
                message: format!("`include` entry {} sets no parameter, only matrix values", index + 1),
                hint: Some("new combinations go in the matrix's lists; `include` adds parameters to existing ones".into()),
            });
        }
        let mut matched = 0;
        for (combination, params) in &mut result {
            let selected =
                selectors.iter().all(|(key, wanted)| combination.iter().any(|(k, v)| k == *key && *v == canonical((*wanted).clone())));
            if selected {
                matched += 1;
                for (key, value) in &extras {
                    params.insert((*key).clone(), (*value).clone());
                }
            }
        }
        if matched == 0 {
            let (key, value) = selectors
                .iter()
                .find(|(key, wanted)| {
                    let values = &matrix[key.as_str()];
                    !values.iter().any(|v| canonical(v.clone()) == canonical((*wanted).clone()))
                })
                .or(selectors.first())
                .expect("an entry with no selectors matches every combination");
            let listed: Vec<String> = matrix[key.as_str()].iter().map(display_value).collect();
            return Err(IncludeError {
                index,
                key: Some((*key).clone()),
                message: format!(
                    "`include` entry {} selects {key}={}, which matches no combination of the matrix",
                    index + 1,
                    display_value(value)
                ),
                hint: Some(format!("`{key}` lists: {}", listed.join(", "))),
            });
        }
    }
    Ok(result)
}

fn combinations(axes: &[(&String, &Vec<Value>)]) -> Vec<Combination> {
    let mut result = vec![Vec::new()];
    for (key, values) in axes {
        result = result
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push(((*key).clone(), canonical(v.clone())));
                    next
                })
            })
            .collect();
    }
    result
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn matrix(value: Value) -> IndexMap<String, Vec<Value>> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn axes_multiply_and_include_adds_parameters_to_what_it_selects() {
        let m = matrix(json!({
            "arch": ["a", "b"],
            "fold": [1, 2],
            "include": [{"arch": "b", "epochs": 20}, {"arch": "b", "fold": 2, "epochs": 30, "lr": 0.1}, {"seed": 7}]
        }));
        let expanded = expand(&m).unwrap();
        assert_eq!(expanded.len(), 4);
        let params: Vec<Value> = expanded.iter().map(|(_, p)| Value::Object(p.clone())).collect();
        assert_eq!(
            params,
            vec![json!({"seed": 7}), json!({"seed": 7}), json!({"epochs": 20, "seed": 7}), json!({"epochs": 30, "lr": 0.1, "seed": 7}),]
        );
        assert_eq!(expanded[3].0, vec![("arch".to_string(), json!("b")), ("fold".to_string(), json!(2))]);
    }

    #[test]
    fn an_entry_that_selects_nothing_names_the_value_and_lists_the_axis() {
        let m = matrix(json!({"arch": ["a", "b"], "include": [{"arch": "c", "epochs": 2}]}));
        let err = expand(&m).unwrap_err();
        assert_eq!(err.index, 0);
        assert_eq!(err.key.as_deref(), Some("arch"));
        assert!(err.message.contains("arch=c"), "{}", err.message);
        assert_eq!(err.hint.as_deref(), Some("`arch` lists: a, b"));
    }

    #[test]
    fn entries_must_be_mappings_that_set_a_parameter() {
        let not_a_map = matrix(json!({"arch": ["a"], "include": ["a"]}));
        assert!(expand(&not_a_map).unwrap_err().message.contains("not a mapping"));
        let only_axes = matrix(json!({"arch": ["a"], "include": [{"arch": "a"}]}));
        assert!(expand(&only_axes).unwrap_err().message.contains("sets no parameter"));
    }

    #[test]
    fn numbers_match_whatever_way_they_are_written() {
        let m = matrix(json!({"lr": [0.5, 1.0], "include": [{"lr": 1, "epochs": 3}]}));
        let expanded = expand(&m).unwrap();
        assert!(expanded[0].1.is_empty());
        assert_eq!(Value::Object(expanded[1].1.clone()), json!({"epochs": 3}));
    }
}
