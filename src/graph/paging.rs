//! Graph collection pages: records kept as the exact bytes Graph sent (lossless landing), and
//! `@odata.nextLink` followed verbatim, only on the Graph host, never twice.

use std::collections::HashSet;
use std::ops::Range;

use bytes::Bytes;
use reqwest::Url;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{CallStats, GraphClient, GraphError, Headers, Reply, RequestIds, snippet};

/// One page: the body and where each record of `value` sits in it.
#[derive(Debug)]
pub struct Page {
    pub body: Bytes,
    pub records: Vec<Range<usize>>,
    pub next_link: Option<String>,
    pub delta_link: Option<String>,
    /// `@odata.count` (asked with `$count=true` under `ConsistencyLevel: eventual`).
    pub count: Option<u64>,
    pub ids: RequestIds,
}

#[derive(Deserialize)]
struct Shape<'a> {
    #[serde(borrow, default)]
    value: Option<Vec<&'a RawValue>>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
    #[serde(rename = "@odata.count", default)]
    count: Option<u64>,
}

impl Page {
    /// Parses a collection page; the error text says what is wrong with the body.
    pub fn parse(body: Bytes, ids: RequestIds) -> Result<Page, (String, RequestIds)> {
        // A byte order mark is not JSON, but RFC 8259 lets a reader ignore it; the records
        // still land as the exact bytes that follow it.
        let body = match body.strip_prefix(b"\xef\xbb\xbf") {
            Some(_) => body.slice(3..),
            None => body,
        };
        let shape: Shape = match serde_json::from_slice(&body) {
            Ok(s) => s,
            Err(e) => return Err((unparsable(&body, &e), ids)),
        };
        // serde also reads a struct from a JSON array (fields by position), so `[[{…}]]`
        // would pass as a page: a page is an object.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err((
                format!("JSON that is not an object: {:?}", snippet(&body)),
                ids,
            ));
        }
        let Some(values) = shape.value else {
            return Err((
                format!("JSON without a `value` array: {:?}", snippet(&body)),
                ids,
            ));
        };
        let base = body.as_ptr() as usize;
        let mut records = Vec::with_capacity(values.len());
        for v in &values {
            let text = v.get();
            if !text.starts_with('{') {
                return Err((
                    format!(
                        "a `value` element is not an object: {}",
                        text.chars().take(80).collect::<String>()
                    ),
                    ids,
                ));
            }
            // RawValue borrows from `body`, so its offset inside it is exact.
            let start = text.as_ptr() as usize - base;
            records.push(start..start + text.len());
        }
        let (next_link, delta_link, count) = (shape.next_link, shape.delta_link, shape.count);
        Ok(Page {
            body,
            records,
            next_link,
            delta_link,
            count,
            ids,
        })
    }

    /// Raw JSON bytes of record `i`.
    pub fn record(&self, i: usize) -> &[u8] {
        &self.body[self.records[i].clone()]
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// What is wrong with a body that does not read as a page, in the admin's terms.
fn unparsable(body: &[u8], e: &serde_json::Error) -> String {
    use serde_json::Value;
    use serde_json::error::Category;
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => format!("an empty body ({} bytes) instead of JSON", body.len()),
        Some(b'<') => format!("an HTML page instead of JSON: {:?}", snippet(body)),
        _ => match e.classify() {
            Category::Eof => format!(
                "invalid JSON, cut short after {} bytes ({e}): the connection or a proxy ended the body early",
                body.len()
            ),
            // Valid JSON of another shape: name the part that is off (parsed again only here).
            Category::Data => match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(o)) => match o.get("value") {
                    Some(v) => format!(
                        "`value` is {} instead of an array: {:?}",
                        kind(v),
                        snippet(body)
                    ),
                    None => format!("JSON of an unexpected shape ({e}): {:?}", snippet(body)),
                },
                Ok(v) => format!(
                    "JSON that is {}, not an object with a `value` array: {:?}",
                    kind(&v),
                    snippet(body)
                ),
                Err(_) => format!("invalid JSON ({e}), {} bytes", body.len()),
            },
            _ => format!(
                "invalid JSON ({e}), {} bytes: {:?}",
                body.len(),
                snippet(body)
            ),
        },
    }
}

/// Walks a collection: remembers every link followed, refuses foreign hosts and loops.
pub struct Pager {
    next: Option<Url>,
    seen: HashSet<String>,
    graph: Url,
    /// Headers sent with every page (delta queries size pages with `Prefer`; advanced
    /// queries need `ConsistencyLevel` on their next links too).
    headers: Headers,
}

impl Pager {
    pub fn new(first: Url, graph: &Url) -> Pager {
        Pager {
            seen: HashSet::from([first.to_string()]),
            next: Some(first),
            graph: graph.clone(),
            headers: Headers::default(),
        }
    }

    /// Sends `headers` with every page request.
    pub fn with_headers(mut self, headers: Headers) -> Pager {
        self.headers = headers;
        self
    }

    /// The link the next call will follow (what a checkpoint resumes from).
    pub fn next_link(&self) -> Option<&Url> {
        self.next.as_ref()
    }

    /// Fetches the next page, or `None` at the end of the collection.
    pub async fn next_page(
        &mut self,
        client: &GraphClient,
        stats: &CallStats,
        what: &str,
    ) -> Result<Option<Page>, GraphError> {
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        let parse = |r: Reply| Page::parse(r.body, r.ids);
        let page = client
            .get_graph_with(&url, stats, what, self.headers, parse)
            .await?;
        if let Some(link) = &page.next_link {
            self.next = Some(self.check_link(link, &page.ids)?);
        }
        Ok(Some(page))
    }

    /// A next link is followed verbatim, but only to the Graph origin and only once.
    /// Public for the fuzz target (`fuzz/fuzz_targets/graph_page.rs`), which checks the
    /// links of arbitrary pages without a network.
    pub fn check_link(&mut self, link: &str, ids: &RequestIds) -> Result<Url, GraphError> {
        let foreign = || GraphError::ForeignNextLink {
            link: link.chars().take(200).collect(),
            graph_host: self.graph.host_str().unwrap_or("").to_string(),
            ids: ids.clone(),
        };
        let url = Url::parse(link).map_err(|_| foreign())?;
        if url.scheme() != self.graph.scheme()
            || url.host_str() != self.graph.host_str()
            || url.port_or_known_default() != self.graph.port_or_known_default()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(foreign());
        }
        if !self.seen.insert(link.to_string()) {
            return Err(GraphError::NextLinkLoop {
                link: link.chars().take(200).collect(),
                ids: ids.clone(),
            });
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> RequestIds {
        RequestIds::default()
    }

    #[test]
    fn records_are_exact_bytes() {
        let body = Bytes::from_static(
            br#"{"@odata.context":"x","value":[ {"id":"1","n":"a,\"b\"\n"} ,{"id":"2","x":1.50}],"@odata.nextLink":"https://graph.microsoft.com/v1.0/users?$skiptoken=X%27"}"#,
        );
        let p = Page::parse(body, ids()).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p.record(0), br#"{"id":"1","n":"a,\"b\"\n"}"#);
        assert_eq!(p.record(1), br#"{"id":"2","x":1.50}"#);
        assert_eq!(
            p.next_link.as_deref(),
            Some("https://graph.microsoft.com/v1.0/users?$skiptoken=X%27")
        );
    }

    #[test]
    fn bad_bodies_are_described() {
        let html = Page::parse(
            Bytes::from_static(b"<html><body>Service Unavailable</body></html>"),
            ids(),
        )
        .unwrap_err();
        assert!(html.0.contains("HTML page"), "{}", html.0);
        let novalue = Page::parse(Bytes::from_static(br#"{"error":"x"}"#), ids()).unwrap_err();
        assert!(novalue.0.contains("without a `value`"));
        let cut =
            Page::parse(Bytes::from_static(br#"{"value":[{"id":"1"},{"id""#), ids()).unwrap_err();
        assert!(cut.0.contains("invalid JSON"));
        let scalar = Page::parse(Bytes::from_static(br#"{"value":[1]}"#), ids()).unwrap_err();
        assert!(scalar.0.contains("not an object"));
    }

    /// Found while writing the fuzz target: the excerpt of a bad element was cut at byte 80,
    /// which panicked inside a multi-byte character.
    #[test]
    fn a_long_non_object_element_is_cut_on_a_character() {
        let body = format!(r#"{{"value":["{}"]}}"#, "é".repeat(60));
        let e = Page::parse(Bytes::from(body), ids()).unwrap_err();
        assert!(e.0.contains("not an object: \"éé"), "{}", e.0);
    }

    /// Found by fuzzing (fuzz/fuzz_targets/graph_page.rs): serde reads a struct from an
    /// array too, so `[[{…}], "link"]` was a page with a record and a next link.
    #[test]
    fn an_array_is_not_a_page() {
        for body in [
            &b"[\t[\t]]\t"[..],
            br#" [[{"id":"1"}],"https://graph.microsoft.com/v1.0/users"]"#,
        ] {
            let e = Page::parse(Bytes::copy_from_slice(body), ids()).unwrap_err();
            assert!(e.0.starts_with("JSON that is not an object"), "{}", e.0);
        }
    }

    #[test]
    fn unusable_bodies_are_named_in_the_admins_terms() {
        let problem = |b: &'static [u8]| Page::parse(Bytes::from_static(b), ids()).unwrap_err().0;
        assert!(problem(b"").starts_with("an empty body (0 bytes)"));
        assert!(problem(b" \r\n").starts_with("an empty body (3 bytes)"));
        let p = problem(br#"{"value":{"id":"1"}}"#);
        assert!(
            p.starts_with("`value` is an object instead of an array"),
            "{p}"
        );
        let p = problem(br#"[{"id":"1"}]"#);
        assert!(p.starts_with("JSON that is an array, not an object"), "{p}");
        let p = problem(b"Service Unavailable");
        assert!(p.contains("\"Service Unavailable\""), "{p}");
        let p = problem(br#"{"value":[{"id":"1"#);
        assert!(p.contains("cut short after 18 bytes"), "{p}");
    }

    #[test]
    fn a_byte_order_mark_is_ignored_and_records_stay_exact() {
        let p = Page::parse(
            Bytes::from_static(b"\xef\xbb\xbf{\"value\":[{\"id\":\"1\"}]}"),
            ids(),
        )
        .unwrap();
        assert_eq!(p.record(0), br#"{"id":"1"}"#);
    }

    #[test]
    fn next_links_stay_on_graph_and_never_repeat() {
        let graph = Url::parse("https://graph.microsoft.com").unwrap();
        let first = Url::parse("https://graph.microsoft.com/v1.0/users?$top=999").unwrap();
        let mut p = Pager::new(first, &graph);
        let ok = "https://graph.microsoft.com/v1.0/users?$skiptoken=abc";
        assert_eq!(p.check_link(ok, &ids()).unwrap().as_str(), ok);
        assert!(matches!(
            p.check_link(ok, &ids()),
            Err(GraphError::NextLinkLoop { .. })
        ));
        for bad in [
            "https://evil.example.com/v1.0/users?$skiptoken=1",
            "http://graph.microsoft.com/v1.0/users?$skiptoken=2",
            "https://graph.microsoft.com:8443/v1.0/users",
            "https://user@graph.microsoft.com/v1.0/users",
            "https://:secret@graph.microsoft.com/v1.0/users",
            "/v1.0/users?$skiptoken=3",
        ] {
            assert!(
                matches!(
                    p.check_link(bad, &ids()),
                    Err(GraphError::ForeignNextLink { .. })
                ),
                "{bad}"
            );
        }
    }
}
