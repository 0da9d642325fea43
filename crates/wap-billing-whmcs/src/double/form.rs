//! The request's form fields, with PHP's array keys (`pid[0]`, `pid[]`).

/// The decoded form of one request.
#[derive(Debug, Default)]
pub(crate) struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Self {
        Form { pairs: form_urlencoded::parse(body).into_owned().collect() }
    }

    /// The first value of `key` (exact name).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `key` as an id (`""`, missing or not a number: `None`).
    pub(crate) fn id(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.trim().parse().ok())
    }

    /// A boolean flag as PHP reads one: set and not `""`, `0` or `false`.
    pub(crate) fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
    }

    /// The entries of array `key`: `key[N]` with their index, `key[]` numbered in order, or a scalar `key` as
    /// index 0. Sorted by index.
    pub(crate) fn indexed(&self, key: &str) -> Vec<(usize, &str)> {
        let mut out = Vec::new();
        let mut next = 0usize;
        for (k, v) in &self.pairs {
            let Some(rest) = k.strip_prefix(key) else { continue };
            if rest.is_empty() {
                out.push((0, v.as_str()));
            } else if rest == "[]" {
                out.push((next, v.as_str()));
                next += 1;
            } else if let Some(n) =
                rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')).and_then(|n| n.parse::<usize>().ok())
            {
                out.push((n, v.as_str()));
                next = next.max(n + 1);
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out.dedup_by_key(|(i, _)| *i);
        out
    }

    /// Entry `index` of array `key`.
    pub(crate) fn at(&self, key: &str, index: usize) -> Option<&str> {
        self.indexed(key).into_iter().find(|(i, _)| *i == index).map(|(_, v)| v)
    }
}
