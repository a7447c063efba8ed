//! Reading a `/metrics` scrape (Prometheus text format) back into series,
//! for `sluice status` and `sluice top`.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Series {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Every sample of a scrape; comments and lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Series> {
    text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Series> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, labels(rest.strip_suffix('}')?)?),
        None => (series, Vec::new()),
    };
    Some(Series { name: name.to_owned(), labels, value })
}

/// `k="v",k2="v2"`, with `\"`, `\\` and `\n` escapes in values.
fn labels(mut text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.trim_start_matches(',').to_owned(), value));
        text = rest[end + 1..].trim_start_matches(',');
    }
    Some(out)
}

/// Sums of `name` over its labels, for the names in `names`.
pub fn sums<'a>(series: &[Series], names: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for name in names {
        let total: Option<f64> = series.iter().filter(|s| s.name == name).map(|s| s.value).reduce(|a, b| a + b);
        if let Some(v) = total {
            out.insert(name.to_owned(), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_labels_and_values() {
        let s = parse(
            "# HELP x y\nsluice_events_received_total{listener=\"tcp\"} 5\nplain 1.5\n\
             h_bucket{stage=\"a\\\"b\",le=\"+Inf\"} 3\nbad line\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].label("listener"), Some("tcp"));
        assert_eq!(s[0].value, 5.0);
        assert_eq!(s[1], Series { name: "plain".into(), labels: vec![], value: 1.5 });
        assert_eq!(s[2].label("stage"), Some("a\"b"));
        assert_eq!(s[2].label("le"), Some("+Inf"));
    }

    #[test]
    fn sums_over_labels() {
        let s = parse("a{l=\"x\"} 5\na{l=\"y\"} 2\nb 10\nc 1\n");
        let sums = sums(&s, ["a", "b", "missing"]);
        assert_eq!(sums["a"], 7.0);
        assert_eq!(sums["b"], 10.0);
        assert!(!sums.contains_key("missing"));
    }
}
