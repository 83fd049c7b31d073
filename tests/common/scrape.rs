//! `/metrics` as Prometheus reads it: a scrape parsed into samples, and each metric family's declared type.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use reqwest::StatusCode;

use super::Api;

/// One sample of the exposition: a metric name, its labels and its value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A scrape, parsed: every sample and each metric family's declared type.
pub struct Scrape {
    pub samples: Vec<Sample>,
    pub types: HashMap<String, String>,
}

impl Scrape {
    pub async fn of(api: &Api) -> Scrape {
        let response = api.client.get(api.url("/metrics")).send().await.expect("scrape");
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        Scrape::parse(&response.text().await.expect("text"))
    }

    pub fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape { samples: Vec::new(), types: HashMap::new() };
        for line in text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').expect("# TYPE name kind");
                scrape.types.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') && !line.is_empty() {
                scrape.samples.push(sample(line));
            }
        }
        scrape
    }

    /// The values of `name` whose labels include every pair of `with`.
    pub fn values(&self, name: &str, with: &[(&str, &str)]) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|sample| sample.name == name)
            .filter(|sample| {
                with.iter().all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
            })
            .map(|sample| sample.value)
            .collect()
    }

    /// The one value of `name` with exactly these labels among others; 0 when the series is absent.
    pub fn value(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        let values = self.values(name, with);
        assert!(values.len() <= 1, "{name} {with:?} names one series, not {values:?}");
        values.first().copied().unwrap_or(0.0)
    }

    /// Every name a query may use: each family's, and a histogram's `_bucket`, `_sum` and `_count` series.
    pub fn names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (name, kind) in &self.types {
            names.insert(name.clone());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
        names
    }
}

/// `name{key="value",...} value`, with escapes in the quoted values.
fn sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).expect("a name");
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inside) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inside.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = inside.split_once("=\"").expect("key=\"value\"");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect("a closing quote") {
                    (_, '\\') => value.push(chars.next().expect("an escaped character").1),
                    (at, '"') => break at,
                    (_, other) => value.push(other),
                }
            };
            labels.insert(key.trim_start_matches(',').to_owned(), value);
            inside = after[end + 1..].trim_start_matches(',');
        }
    }
    let value = rest.trim().split(' ').next().expect("a value").parse().expect("a number");
    Sample { name, labels, value }
}
